/* segment.h — segment files and their sealed index files.
 *
 * A segment file DIR/<first position, 20 digits>.seg:
 *
 *   off size
 *     0   8  magic "PAYISEG1"
 *     8   4  format version (2; a file of another version is refused, never repaired)
 *    12   4  zero
 *    16   8  first position
 *    24   4  CRC32C of bytes [0, 24)
 *    28   4  zero
 *    32      records (record.h), back to back, each padded to 8 bytes
 *            then, in the active segment, up to 4095 zero bytes: the writer
 *            writes whole 4 KiB pages with O_DIRECT, and a scan treats an
 *            all-zero tail as the clean end of the file
 *
 * A sealed segment (one that is not the last) gets DIR/<first>.idx, written
 * once when the log rolls past it, so that reopening needs no rescan:
 *
 *     0   8  magic "PAYIIDX1"
 *     8   4  format version (as the segment's)
 *    12   4  record count n
 *    16   8  first position
 *    24   8  segment end (byte size of the .seg file)
 *    32   4  number of distinct streams s
 *    36   4  number of client ids c
 *    40   8  zero
 *    48      u32 offset[n]        byte offset of each record in the .seg
 *            u32 stream_ref[n]    index into the stream table below
 *            s x (u16 len, bytes) stream names
 *            u32 CRC32C of everything above
 *            c x (16-byte id, u64 position)     client ids
 *      end-4 u32 CRC32C of the client ids
 *
 * Two checksums, so that opening reads the main part only; the client ids
 * are read by the id loader in the background.
 *
 * The .idx is a cache: it is trusted only when its CRC holds and its first
 * position, count and segment end match the .seg file; otherwise the segment
 * is scanned (and every record verified) and the .idx rewritten.
 */
#ifndef PAYI_SEGMENT_H
#define PAYI_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "log/index.h"
#include "log/record.h"

#define SEG_HEADER_SIZE 32
#define SEG_NAME_DIGITS 20

typedef struct seg_cid {
    payi_uuid id;
    uint64_t position;
} seg_cid;

typedef struct segment {
    uint64_t first;          /* position of the first record */
    uint64_t count;          /* published records */
    uint64_t end;            /* byte offset just past the last published record */
    int fd;                  /* buffered: reads, scans, truncation, fdatasync */
    int wfd;                 /* the writer's O_DIRECT descriptor, or -1 (then fd is written) */
    uint32_t *offsets;       /* offsets[i]: record first + i */
    size_t offsets_cap;
    /* Kept for the active segment only, to write its .idx when sealed. */
    uint32_t *stream_nums;   /* stream number of each record */
    size_t stream_nums_cap;
    /* Client ids of the segment: kept for the active one (for its .idx), and
     * for sealed ones only until the id table has loaded them. */
    seg_cid *cids;
    size_t ncids, cids_cap;
    /* A sealed segment loaded from its .idx: where its client ids are in
     * that file, for the id loader (seg_read_index_ids). */
    uint64_t idx_ids_at;
    size_t idx_nids;
} segment;

void seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext);
/* Parses "<20 digits>.seg"; false for any other name. */
bool seg_parse_name(const char *name, uint64_t *first);

/* Create a new, empty segment file (header written and fsynced, directory fsynced). */
payi_code seg_create(const char *dir, uint64_t first, segment *seg, payi_err *err);
/* Open an existing segment, check its header.  A file shorter than the header
 * or with a bad header gives PAYI_CORRUPT (the caller decides if that is a torn
 * creation it can redo). */
payi_code seg_open(const char *dir, uint64_t first, bool writable, segment *seg, payi_err *err);
void seg_release(segment *seg);
/* Open seg->wfd with O_DIRECT for the writer; leaves -1 where the file system
 * refuses O_DIRECT (tmpfs), and the writer then writes through the page cache. */
void seg_open_direct(const char *dir, segment *seg);

void seg_add_record(segment *seg, uint64_t offset, uint32_t stream_num, const rec_view *r);

/* What a scan found. */
typedef struct seg_scan_result {
    uint64_t file_size;
    uint64_t records;        /* whole, valid records up to the last complete batch */
    uint64_t end;            /* byte offset just past them */
    bool tail_problem;       /* something follows end: a torn tail, or corruption */
    bool corrupt;            /* the problem is corruption, not a torn tail */
    uint64_t bad_offset;     /* first offset that is not a valid next record */
    const char *bad_reason;
    uint64_t later_offset;   /* corrupt: offset of a valid record of a later batch */
} seg_scan_result;

typedef int (*seg_record_fn)(void *ctx, const rec_view *r, uint64_t offset);

/* Verify records from byte offset `from` (expected position first_pos) and
 * classify what follows the last complete batch.  With fn, calls it for each
 * record up to max_records.  Reads the file in large chunks. */
payi_code seg_scan(const segment *seg, const char *path, uint64_t from, uint64_t first_pos,
                   uint32_t max_total, uint64_t max_records, seg_record_fn fn, void *ctx,
                   seg_scan_result *res, payi_err *err);

/* Write DIR/<first>.idx for a complete segment (atomic: temp file, fsync, rename). */
payi_code seg_write_index(const char *dir, const segment *seg, const stream_table *streams, payi_err *err);
/* Load a .idx into seg (offsets; where its client ids are) and the stream
 * table.  PAYI_NOT_FOUND when it is missing or does not match (the caller
 * rescans); other codes are I/O errors. */
payi_code seg_load_index(const char *dir, segment *seg, uint64_t seg_file_size, stream_table *streams,
                         payi_err *err);

/* Read and verify the client ids of a segment loaded from its .idx: idx_nids
 * entries of 24 bytes (16-byte id, u64 position) and the CRC, into *out
 * (owned by the caller).  PAYI_CORRUPT when the CRC fails. */
payi_code seg_read_index_ids(const char *dir, const segment *seg, unsigned char **out, payi_err *err);

payi_code dir_fsync(const char *dir, payi_err *err);

#endif
