/* index.h — the log's in-memory indexes.
 *
 * streams: name -> stream (its positions by version).  Version v of a stream
 *          is positions[v]; versions are dense, so no version is stored.
 * ids:     client-supplied event id -> position, for idempotent appends.
 *          Unbounded: every client id ever appended is kept (24 bytes each
 *          plus table slack), and persisted in each sealed segment's index
 *          file so that reopening does not rescan the log.  Generated ids
 *          cannot collide, so they are not kept.
 *
 * Both are open-addressing tables with linear probing.  The log serializes
 * access (see log.c); these functions do no locking. */
#ifndef PAYI_INDEX_H
#define PAYI_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "base/uuid.h"

typedef struct stream_entry {
    char *name;
    uint32_t name_len;
    uint32_t hash;
    uint32_t num;          /* its number in the table */
    uint64_t *positions;   /* published versions: positions[0 .. count) */
    uint64_t count;
    uint64_t cap;
    uint64_t pending;      /* writer only: versions including staged, unpublished ones */
    payi_uuid last_id;     /* writer only: the id of the last staged event, when last_id_known */
    bool last_id_known;    /* false until this process appended to the stream */
} stream_entry;

typedef struct stream_table {
    stream_entry **items;  /* by stream number, in order of first appearance */
    uint32_t n, items_cap;
    uint32_t *slots;       /* stream number + 1, 0 = empty */
    uint32_t nslots;       /* power of two */
} stream_table;

void streams_init(stream_table *t);
void streams_release(stream_table *t);
stream_entry *streams_find(const stream_table *t, const char *name, uint32_t len);
/* Finds or adds; *number receives the stream's number. */
stream_entry *streams_get(stream_table *t, const char *name, uint32_t len, uint32_t *number);
void stream_push(stream_entry *s, uint64_t position);

/* Slots hold a 64-bit fingerprint of the id, not the id: half the memory,
 * and a probe compares one word.  Two ids may share a fingerprint, so a hit
 * is confirmed by the caller (the log reads the event's id at the position). */
typedef struct id_table {
    struct id_slot {
        uint64_t key;       /* fingerprint, never 0; 0 marks an empty slot */
        uint64_t position;
    } *slots;
    uint64_t nslots;        /* power of two */
    uint64_t n;
} id_table;

/* Confirms that the event at position has this id. */
typedef bool (*id_confirm_fn)(void *ctx, uint64_t position, const payi_uuid *id);

void ids_init(id_table *t);
void ids_release(id_table *t);
/* Make room for n entries in all, so that loading them never rehashes. */
void ids_reserve(id_table *t, uint64_t n);
/* Position of id, or false.  confirm may be NULL to trust fingerprints. */
bool ids_find(const id_table *t, const payi_uuid *id, id_confirm_fn confirm, void *ctx, uint64_t *position);
void ids_insert(id_table *t, const payi_uuid *id, uint64_t position);
/* Remove the entry of id at position if present (undoes a staged insert). */
void ids_remove(id_table *t, const payi_uuid *id, uint64_t position);

uint32_t index_hash_bytes(const void *p, size_t n);

#endif
