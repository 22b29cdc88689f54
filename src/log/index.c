#include "log/index.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

uint32_t index_hash_bytes(const void *p, size_t n)
{
    /* FNV-1a, then a final mix so that low bits (the slot index) depend on every byte. */
    const unsigned char *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return h;
}

void streams_init(stream_table *t)
{
    memset(t, 0, sizeof *t);
    t->nslots = 1024;
    t->slots = xcalloc(t->nslots, sizeof *t->slots);
}

void streams_release(stream_table *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        free(t->items[i]->name);
        free(t->items[i]->positions);
        free(t->items[i]);
    }
    free(t->items);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static uint32_t *streams_slot(const stream_table *t, const char *name, uint32_t len, uint32_t hash)
{
    uint32_t mask = t->nslots - 1;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        uint32_t v = t->slots[i];
        if (!v)
            return &t->slots[i];
        const stream_entry *s = t->items[v - 1];
        if (s->hash == hash && s->name_len == len && memcmp(s->name, name, len) == 0)
            return &t->slots[i];
    }
}

static void streams_rehash(stream_table *t)
{
    free(t->slots);
    t->nslots *= 2;
    t->slots = xcalloc(t->nslots, sizeof *t->slots);
    for (uint32_t k = 0; k < t->n; k++) {
        const stream_entry *s = t->items[k];
        *streams_slot(t, s->name, s->name_len, s->hash) = k + 1;
    }
}

stream_entry *streams_find(const stream_table *t, const char *name, uint32_t len)
{
    uint32_t v = *streams_slot(t, name, len, index_hash_bytes(name, len));
    return v ? t->items[v - 1] : NULL;
}

stream_entry *streams_get(stream_table *t, const char *name, uint32_t len, uint32_t *number)
{
    uint32_t hash = index_hash_bytes(name, len);
    uint32_t *slot = streams_slot(t, name, len, hash);
    if (*slot) {
        *number = *slot - 1;
        return t->items[*slot - 1];
    }
    stream_entry *s = xcalloc(1, sizeof *s);
    s->name = xstrndup(name, len);
    s->name_len = len;
    s->hash = hash;
    s->num = t->n;
    size_t cap = t->items_cap;
    t->items = xgrow(t->items, &cap, (size_t)t->n + 1, sizeof *t->items);
    t->items_cap = (uint32_t)cap;
    t->items[t->n] = s;
    *slot = ++t->n;
    *number = t->n - 1;
    if ((uint64_t)t->n * 4 >= (uint64_t)t->nslots * 3)   /* keep the load under 3/4 */
        streams_rehash(t);
    return s;
}

void stream_push(stream_entry *s, uint64_t position)
{
    if (s->count == s->cap) {
        size_t cap = s->cap;
        s->positions = xgrow(s->positions, &cap, s->count + 1, sizeof *s->positions);
        s->cap = cap;
    }
    s->positions[s->count++] = position;
}

/* ---- ids ---- */

static uint64_t ids_hash(const payi_uuid *id)
{
    /* Client ids are not trusted to be random: mix all 16 bytes. */
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

void ids_init(id_table *t)
{
    t->nslots = 1024;
    t->n = 0;
    t->slots = xcalloc(t->nslots, sizeof *t->slots);
}

void ids_release(id_table *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static uint64_t ids_slot(const id_table *t, const payi_uuid *id)
{
    uint64_t mask = t->nslots - 1;
    for (uint64_t i = ids_hash(id) & mask;; i = (i + 1) & mask)
        if (uuid_is_nil(&t->slots[i].id) || memcmp(&t->slots[i].id, id, sizeof *id) == 0)
            return i;
}

bool ids_find(const id_table *t, const payi_uuid *id, uint64_t *position)
{
    uint64_t i = ids_slot(t, id);
    if (uuid_is_nil(&t->slots[i].id))
        return false;
    *position = t->slots[i].position;
    return true;
}

static void ids_grow(id_table *t)
{
    struct id_slot *old = t->slots;
    uint64_t oldn = t->nslots;
    t->nslots *= 2;
    t->slots = xcalloc(t->nslots, sizeof *t->slots);
    for (uint64_t i = 0; i < oldn; i++)
        if (!uuid_is_nil(&old[i].id))
            t->slots[ids_slot(t, &old[i].id)] = old[i];
    free(old);
}

void ids_insert(id_table *t, const payi_uuid *id, uint64_t position)
{
    if ((t->n + 1) * 2 > t->nslots)   /* load <= 1/2: probes stay short */
        ids_grow(t);
    uint64_t i = ids_slot(t, id);
    t->slots[i].id = *id;
    t->slots[i].position = position;
    t->n++;
}

void ids_remove(id_table *t, const payi_uuid *id)
{
    uint64_t mask = t->nslots - 1;
    uint64_t i = ids_slot(t, id);
    if (uuid_is_nil(&t->slots[i].id))
        return;
    /* Backward-shift deletion: move later members of the probe run into the
     * hole when their home slot does not lie strictly between hole and them. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & mask; !uuid_is_nil(&t->slots[j].id); j = (j + 1) & mask) {
        uint64_t home = ids_hash(&t->slots[j].id) & mask;
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    memset(&t->slots[hole], 0, sizeof t->slots[hole]);
    t->n--;
}
