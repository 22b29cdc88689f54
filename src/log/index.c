#include "log/index.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

static uint64_t ids_key(const payi_uuid *id)
{
    /* Client ids are not trusted to be random: mix all 16 bytes. */
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h ? h : 1;
}

static struct id_slot *ids_alloc(uint64_t nslots)
{
    size_t bytes = nslots * sizeof(struct id_slot);
    struct id_slot *p = xcalloc(nslots, sizeof *p);
#ifdef MADV_HUGEPAGE
    if (bytes >= (64u << 20)) {   /* big tables: fewer page faults and TLB misses; advisory only */
        uintptr_t start = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        if (start < (uintptr_t)p + bytes)
            madvise((void *)start, (uintptr_t)p + bytes - start, MADV_HUGEPAGE);
    }
#endif
    return p;
}

void ids_init(id_table *t)
{
    t->nslots = 1024;
    t->n = 0;
    t->slots = ids_alloc(t->nslots);
}

void ids_release(id_table *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static bool ids_full(uint64_t n, uint64_t nslots) { return n * 10 > nslots * 7; }   /* load <= 0.7 */

static void ids_place(struct id_slot *slots, uint64_t mask, uint64_t key, uint64_t position)
{
    uint64_t i = key & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].position = position;
}

static void ids_rehash(id_table *t, uint64_t nslots)
{
    struct id_slot *old = t->slots;
    uint64_t oldn = t->nslots;
    t->slots = ids_alloc(nslots);
    t->nslots = nslots;
    for (uint64_t i = 0; i < oldn; i++)
        if (old[i].key)
            ids_place(t->slots, nslots - 1, old[i].key, old[i].position);
    free(old);
}

void ids_reserve(id_table *t, uint64_t n)
{
    uint64_t nslots = t->nslots;
    while (ids_full(n, nslots))
        nslots *= 2;
    if (nslots != t->nslots)
        ids_rehash(t, nslots);
}

bool ids_find(const id_table *t, const payi_uuid *id, id_confirm_fn confirm, void *ctx, uint64_t *position)
{
    uint64_t key = ids_key(id), mask = t->nslots - 1;
    for (uint64_t i = key & mask; t->slots[i].key; i = (i + 1) & mask) {
        if (t->slots[i].key == key && (!confirm || confirm(ctx, t->slots[i].position, id))) {
            *position = t->slots[i].position;
            return true;
        }
    }
    return false;
}

void ids_insert(id_table *t, const payi_uuid *id, uint64_t position)
{
    if (ids_full(t->n + 1, t->nslots))
        ids_rehash(t, t->nslots * 2);
    ids_place(t->slots, t->nslots - 1, ids_key(id), position);
    t->n++;
}

void ids_remove(id_table *t, const payi_uuid *id, uint64_t position)
{
    uint64_t key = ids_key(id), mask = t->nslots - 1, i = key & mask;
    while (t->slots[i].key && !(t->slots[i].key == key && t->slots[i].position == position))
        i = (i + 1) & mask;
    if (!t->slots[i].key)
        return;
    /* Backward-shift deletion: move later members of the probe run into the
     * hole when their home slot does not lie strictly between hole and them. */
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & mask; t->slots[j].key; j = (j + 1) & mask) {
        uint64_t home = t->slots[j].key & mask;
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].key = 0;
    t->slots[hole].position = 0;
    t->n--;
}
