/* log.c — the file-backed event store: open and recovery, the group-commit
 * writer, reads, subscriptions.
 *
 * Files in the data directory:
 *   LOCK                   flock(2)ed exclusively by the one writer process
 *   HEAD                   8 bytes: positions [0, HEAD) are acknowledged.  Written
 *                          (not fsynced) after each commit, for readers in other
 *                          processes, which watch it with inotify
 *   <first>.seg            segments, see segment.h and record.h
 *   <first>.idx            index of a sealed segment, see segment.h
 *
 * Invariants:
 *   1. Positions are dense from 0 across segments: segment k+1 starts at
 *      segment k's first + count.  Each stream's versions are dense from 0.
 *   2. A record is visible (below head) only once its whole batch is written
 *      and, in fsync mode, fdatasync has returned.  Acknowledgement happens
 *      after that, never before.
 *   3. A write batch is the unit of atomicity: its last record carries
 *      REC_F_BATCH_END, an append's events never span batches, and recovery
 *      keeps only complete batches.  So an atomic append is all or nothing.
 *   4. The next batch is written only after the previous one is durable.
 *      Hence, at recovery, a valid record from a later batch after a bad spot
 *      proves the bad spot was acknowledged: corruption, refuse to start.
 *      Without such a record the bad spot is a torn tail: truncate it.
 *      (A bit flip inside the very last acknowledged batch looks exactly like
 *      a torn tail and is truncated: no checksum scheme can tell them apart.)
 *   5. The writer writes with O_DIRECT (when the file system allows it): the
 *      kernel's copy into the page cache was half of the writer's time.  Each
 *      write covers whole 4 KiB pages from the page holding the current end:
 *      the bytes of that partial page (`lead`) are written again, unchanged,
 *      and the last page is padded with zeros, which scans accept as the
 *      clean end.  Rolling or closing cuts the padding off.
 *   6. After a failed write or fdatasync the log is read-only for good (sticky
 *      error): the kernel may have dropped the dirty pages, so a retried
 *      fsync could succeed over lost data.  ENOSPC on write is the exception:
 *      the file is truncated back to the last batch, nothing was visible, and
 *      the append is answered insufficient_storage; the log stays writable.
 *
 * Locking: `mu` guards the submission queue, the sticky state and the three
 * condition variables.  `rw` guards what readers look at: the segment array,
 * per-segment offsets and the stream table.  The writer thread is the only
 * mutator of the indexes and the only user of the id table.
 */
#include "log/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/thread.h"
#include "base/timefmt.h"
#include "log/index.h"
#include "log/logio.h"
#include "log/record.h"
#include "log/segment.h"

#define READ_CHUNK (1u << 20)
#define MAX_EVENTS_PER_APPEND 100000u

struct log_submission {
    pthread_cond_t cond;      /* its waiter sleeps here: a commit wakes only its own submitters */
    log_done_fn done_fn;      /* or, for log_submit_cb, this runs on the writer thread */
    void *done_ctx;
    log_append *appends;
    uint32_t n;
    bool stop_at_error;
    bool failed;
    bool done;
    struct log_submission *next;
};

/* A record written into the current batch but not yet published. */
typedef struct staged_rec {
    uint64_t position;
    uint64_t buf_off;        /* offset of the record in the batch buffer */
    uint32_t stream_num;
    uint32_t total_len;
    uint8_t flags;
    payi_uuid id;
} staged_rec;

typedef struct staged_append {
    log_append *append;
    log_submission *sub;
} staged_append;

struct payi_log {
    char *dir;
    log_options opt;
    int lock_fd;
    int head_fd;

    pthread_rwlock_t rw;
    segment *segs;
    size_t nsegs, segs_cap;
    stream_table streams;
    _Atomic uint64_t head;

    id_table ids;
    struct id_batch *id_batches; /* loader input: client ids per segment */
    size_t n_id_batches;
    bool ids_ready;              /* under mu: the id table holds every client id */
    bool loader_started;
    pthread_t loader;

    pthread_mutex_t mu;
    pthread_cond_t work_cond;    /* writer: a submission arrived or stop */
    pthread_cond_t done_cond;    /* the id table finished loading */
    pthread_cond_t commit_cond;  /* subscribers: head moved */
    log_submission *queue, *queue_tail;
    bool stopping;
    bool writer_started;
    pthread_t writer;
    payi_code state;
    _Atomic bool failed;         /* state != OK, readable without mu on the hot path */
    payi_err state_err;

    /* writer-only batch state */
    /* The write buffer, 4 KiB-aligned for O_DIRECT: [0, lead_len) holds the
     * active segment's bytes [end & ~4095, end), written again with the next
     * batch; the batch's records follow, blen bytes; then page padding. */
    unsigned char *wbuf;
    size_t wcap;
    size_t lead_len;
    size_t blen;
    uint64_t next_pos;           /* next position to assign (head + staged) */
    staged_rec *staged;
    size_t nstaged, staged_cap;
    staged_append *sappends;
    size_t nsappends, sappends_cap;
    int64_t last_sync_ns;
    int64_t batch_time;
    bool dirty;

    /* read-only logs following a writer in another process */
    int inotify_fd;

    _Atomic uint64_t batches_written, fsyncs, truncated_bytes, indexes_rebuilt;
};

/* Index entries a subscription copies under one lock: a reader takes the
 * log's lock once per SUB_WINDOW events, not once per event (eight views
 * and generators reading the same log were bouncing its cache line). */
#define SUB_WINDOW 512

struct log_sub {
    payi_log *log;
    uint64_t next;
    buf chunk;             /* bytes of one segment, starting at chunk_off */
    int chunk_fd;
    uint64_t chunk_off;
    /* positions [win_first, win_first + win_n) of one segment sit at bytes
     * [win_off[i], win_off[i + 1]) of win_fd; records never move */
    uint64_t win_first;
    uint32_t win_n;
    int win_fd;
    uint64_t win_seg_first, win_seg_end;
    uint64_t win_off[SUB_WINDOW + 1];
};

/* ---------------------------------------------------------------- options */

void log_options_default(log_options *o)
{
    o->durability = LOG_DURABLE_FSYNC;
    o->interval_ms = 100;
    o->segment_size = 64u << 20;
    o->max_event_size = 1u << 20;
    o->read_only = false;
}

const char *log_durability_name(log_durability d)
{
    switch (d) {
    case LOG_DURABLE_FSYNC: return "fsync";
    case LOG_DURABLE_INTERVAL: return "interval";
    case LOG_DURABLE_NONE: return "none";
    }
    return "?";
}

bool log_durability_parse(const char *s, log_durability *out)
{
    if (!strcmp(s, "fsync"))
        *out = LOG_DURABLE_FSYNC;
    else if (!strcmp(s, "interval"))
        *out = LOG_DURABLE_INTERVAL;
    else if (!strcmp(s, "none"))
        *out = LOG_DURABLE_NONE;
    else
        return false;
    return true;
}

void log_cursor_at(log_cursor *c, uint64_t position)
{
    c->nparts = 1;
    c->next[0] = position;
}

static uint32_t max_record_total(const log_options *o) { return REC_HEADER_SIZE + o->max_event_size; }

/* ---------------------------------------------------------------- open */

static segment *active_seg(payi_log *log) { return &log->segs[log->nsegs - 1]; }

static segment *push_segment(payi_log *log)
{
    pthread_rwlock_wrlock(&log->rw);
    log->segs = xgrow(log->segs, &log->segs_cap, log->nsegs + 1, sizeof *log->segs);
    segment *s = &log->segs[log->nsegs++];
    memset(s, 0, sizeof *s);
    s->fd = -1;
    pthread_rwlock_unlock(&log->rw);
    return s;
}

typedef struct index_ctx {
    payi_log *log;
    segment *seg;
} index_ctx;

static int index_record(void *ctx, const rec_view *r, uint64_t offset)
{
    index_ctx *ic = ctx;
    uint32_t num;
    stream_entry *s = streams_get(&ic->log->streams, r->stream, r->stream_len, &num);
    stream_push(s, r->position);
    s->pending = s->count;
    seg_add_record(ic->seg, offset, num, r);   /* client ids go to seg->cids, for the id loader */
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static payi_code list_segments(const char *dir, uint64_t **out, size_t *n, payi_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return payi_err_sys(err, PAYI_IO, errno, "cannot open data directory %s", dir);
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t first;
        if (seg_parse_name(e->d_name, &first)) {
            *out = xgrow(*out, &cap, *n + 1, sizeof **out);
            (*out)[(*n)++] = first;
        }
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_u64);
    return PAYI_OK;
}

static payi_code corrupt_tail_error(const char *path, const seg_scan_result *r, uint64_t expected_pos,
                                    payi_err *err)
{
    return payi_err_set(err, PAYI_CORRUPT, NULL,
                        "corruption in %s at byte offset %" PRIu64 " (record for position %" PRIu64
                        "): %s; a valid record of a later batch follows at offset %" PRIu64
                        ", so this is not a torn write. Refusing to open; run 'payi check'",
                        path, r->bad_offset, expected_pos, r->bad_reason, r->later_offset);
}

/* Load a sealed segment from its .idx, or by verifying every record. */
static payi_code load_sealed(payi_log *log, segment *seg, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, log->dir, seg->first, "seg");
    struct stat st;
    if (fstat(seg->fd, &st) != 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot stat %s", path);
    payi_code rc = seg_load_index(log->dir, seg, (uint64_t)st.st_size, &log->streams, err);
    if (rc != PAYI_NOT_FOUND)
        return rc;
    log->indexes_rebuilt++;
    seg_scan_result res;
    index_ctx ic = {log, seg};
    rc = seg_scan(seg, path, SEG_HEADER_SIZE, seg->first, max_record_total(&log->opt), UINT64_MAX, index_record,
                  &ic, &res, err);
    if (rc != PAYI_OK)
        return rc;
    if (res.tail_problem)
        return payi_err_set(err, PAYI_CORRUPT, NULL,
                            "corruption in %s at byte offset %" PRIu64 ": %s, and later segments exist. "
                            "Refusing to open; run 'payi check'",
                            path, res.bad_offset, res.bad_reason);
    if (!log->opt.read_only) {
        payi_err ierr;
        if (seg_write_index(log->dir, seg, &log->streams, &ierr) != PAYI_OK)
            fprintf(stderr, "payi: warning: %s (the segment will be scanned again at next open)\n", ierr.msg);
    }
    free(seg->stream_nums);
    seg->stream_nums = NULL;
    seg->stream_nums_cap = 0;
    return PAYI_OK;
}

static payi_code truncate_tail(payi_log *log, segment *seg, const char *path, const seg_scan_result *res,
                               payi_err *err)
{
    if (logio->ftruncate(seg->fd, (off_t)res->end) != 0 || logio->fdatasync(seg->fd) != 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot truncate the torn tail of %s", path);
    log->truncated_bytes += res->file_size - res->end;
    return PAYI_OK;
}

/* The last segment: verify every record, cut a torn tail, refuse corruption.
 * A read-only log indexes complete batches and leaves the file alone. */
/* Take back the index entries of the records after the first keep ones of
 * the segment: a scan indexes every whole record as it verifies it, and only
 * learns at the end which belong to complete batches. */
static void unindex_tail(payi_log *log, segment *seg, uint64_t keep)
{
    while (seg->count > keep) {
        uint64_t i = --seg->count;
        stream_entry *s = log->streams.items[seg->stream_nums[i]];
        s->count--;   /* its last position is this record's: positions are pushed in order */
        s->pending = s->count;
        if (seg->ncids && seg->cids[seg->ncids - 1].position == seg->first + i)
            seg->ncids--;
        seg->end = seg->offsets[i];
    }
}

/* The last segment: verify every record, cut a torn tail, refuse corruption,
 * in one pass.  A read-only log indexes complete batches (up to limit_pos)
 * and leaves the file alone. */
static payi_code load_active(payi_log *log, segment *seg, uint64_t limit_pos, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, log->dir, seg->first, "seg");
    seg_scan_result res;
    uint64_t from = seg->end, first_pos = seg->first + seg->count, had = seg->count;
    uint64_t max = limit_pos > first_pos ? limit_pos - first_pos : 0;
    index_ctx ic = {log, seg};
    payi_code rc =
        seg_scan(seg, path, from, first_pos, max_record_total(&log->opt), max, index_record, &ic, &res, err);
    if (rc != PAYI_OK)
        return rc;
    if (res.tail_problem && res.corrupt)
        return corrupt_tail_error(path, &res, first_pos + res.records, err);
    unindex_tail(log, seg, had + (res.records < max ? res.records : max));
    if (!log->opt.read_only && res.tail_problem)
        return truncate_tail(log, seg, path, &res, err);
    return PAYI_OK;
}

/* A last segment whose header never made it to disk is a roll that crashed:
 * recreate it.  Anything else with a bad header is corruption. */
static payi_code open_last_segment(payi_log *log, uint64_t first, segment *seg, payi_err *err)
{
    payi_code rc = seg_open(log->dir, first, !log->opt.read_only, seg, err);
    if (rc != PAYI_CORRUPT || log->opt.read_only)
        return rc;
    char path[4096];
    struct stat st;
    seg_path(path, sizeof path, log->dir, first, "seg");
    if (stat(path, &st) != 0 || st.st_size > SEG_HEADER_SIZE)
        return rc;
    return seg_create(log->dir, first, seg, err);
}

static payi_code load_segments(payi_log *log, uint64_t limit_pos, payi_err *err)
{
    uint64_t *firsts;
    size_t n;
    payi_code rc = list_segments(log->dir, &firsts, &n, err);
    if (rc != PAYI_OK)
        return rc;
    if (n == 0 && !log->opt.read_only) {
        free(firsts);
        segment *s = push_segment(log);
        return seg_create(log->dir, 0, s, err);
    }
    uint64_t expect = 0;
    for (size_t i = 0; i < n && rc == PAYI_OK; i++) {
        if (firsts[i] != expect) {
            rc = payi_err_set(err, PAYI_CORRUPT, NULL,
                              "segment files of %s are not contiguous: expected one starting at position %" PRIu64
                              ", found %020" PRIu64 ".seg",
                              log->dir, expect, firsts[i]);
            break;
        }
        segment *s = push_segment(log);
        bool last = i + 1 == n;
        rc = last ? open_last_segment(log, firsts[i], s, err) : seg_open(log->dir, firsts[i], false, s, err);
        if (rc == PAYI_OK)
            rc = last ? load_active(log, s, limit_pos, err) : load_sealed(log, s, err);
        expect = s->first + s->count;
    }
    free(firsts);
    if (rc == PAYI_OK && log->nsegs)
        log->head = log->next_pos = active_seg(log)->first + active_seg(log)->count;
    return rc;
}

static payi_code take_lock(payi_log *log, payi_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", log->dir);
    log->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (log->lock_fd < 0)
        return payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot create lock file %s", path);
    if (flock(log->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return payi_err_set(err, PAYI_LOCKED, NULL,
                                "data directory %s is locked: in use by another payi process (%s)", log->dir, path);
        return payi_err_sys(err, PAYI_IO, errno, "cannot lock %s", path);
    }
    return PAYI_OK;
}

static void write_head_file(payi_log *log)
{
    uint64_t h = log->head;
    if (log->head_fd >= 0 && pwrite(log->head_fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        /* Only readers in other processes use HEAD, and they bound it by the
         * records they verify; a stale value delays them, loses nothing. */
    }
}

static payi_code open_head_file(payi_log *log, payi_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/HEAD", log->dir);
    log->head_fd = open(path, (log->opt.read_only ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0644);
    if (log->head_fd < 0 && !log->opt.read_only)
        return payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot create %s", path);
    return PAYI_OK;
}

static void *writer_main(void *arg);
static payi_code load_lead_of(payi_log *log, segment *seg, payi_err *err);
static void log_fail(payi_log *log, const payi_err *why);

/* ---- the id table loads in the background ----
 * Ten million client ids take seconds to hash on this kind of machine, and
 * only appends that carry ids need them.  So open hands the ids found in the
 * segments to a loader thread and returns; reads and appends without ids go
 * ahead, an append with ids waits until the table is complete. */

/* What the loader inserts: n entries of 24 bytes (16-byte id, u64 position),
 * the layout of .idx files and of seg_cid arrays.  entries == NULL: read
 * them from the segment's .idx first (seg is a copy with the first position,
 * the .idx location and the file descriptor, in case the ids must be
 * recovered by scanning). */
typedef struct id_batch {
    unsigned char *entries;   /* owned */
    size_t n;
    segment seg;
} id_batch;

static void take_id_batches(payi_log *log)
{
    _Static_assert(sizeof(seg_cid) == 24, "seg_cid must have the .idx entry layout");
    log->id_batches = xcalloc(log->nsegs, sizeof *log->id_batches);
    for (size_t i = 0; i < log->nsegs; i++) {
        segment *seg = &log->segs[i];
        id_batch *b = &log->id_batches[log->n_id_batches];
        bool active = i + 1 == log->nsegs;
        if (seg->idx_nids) {
            *b = (id_batch){NULL, seg->idx_nids, {.first = seg->first, .fd = seg->fd, .wfd = -1,
                                                  .idx_ids_at = seg->idx_ids_at, .idx_nids = seg->idx_nids}};
        } else if (seg->ncids && active) {   /* the active segment keeps its own for its .idx */
            unsigned char *copy = xmalloc(seg->ncids * sizeof *seg->cids);
            memcpy(copy, seg->cids, seg->ncids * sizeof *seg->cids);
            *b = (id_batch){copy, seg->ncids, {.fd = -1, .wfd = -1}};
        } else if (seg->ncids) {
            *b = (id_batch){(unsigned char *)seg->cids, seg->ncids, {.fd = -1, .wfd = -1}};
            seg->cids = NULL;
            seg->ncids = seg->cids_cap = 0;
        } else {
            continue;
        }
        log->n_id_batches++;
    }
}

static int collect_client_id(void *ctx, const rec_view *r, uint64_t offset)
{
    (void)offset;
    if (r->flags & REC_F_CLIENT_ID)
        ids_insert(ctx, &r->id, r->position);
    return 0;
}

/* The .idx's ids cannot be read: take them from the segment itself. */
static void ids_from_segment(payi_log *log, const segment *seg)
{
    char path[4096];
    seg_path(path, sizeof path, log->dir, seg->first, "seg");
    seg_scan_result res;
    payi_err err;
    if (seg_scan(seg, path, SEG_HEADER_SIZE, seg->first, max_record_total(&log->opt), UINT64_MAX,
                 collect_client_id, &log->ids, &res, &err) != PAYI_OK) {
        /* Without its ids, a retried append could be appended twice: stop appending. */
        log_fail(log, &err);
    }
}

static void *id_loader_main(void *arg)
{
    payi_log *log = arg;
    uint64_t total = 0;
    for (size_t b = 0; b < log->n_id_batches; b++)
        total += log->id_batches[b].n;
    ids_reserve(&log->ids, total);
    for (size_t b = 0; b < log->n_id_batches; b++) {
        id_batch *ib = &log->id_batches[b];
        payi_err err;
        if (!ib->entries && seg_read_index_ids(log->dir, &ib->seg, &ib->entries, &err) != PAYI_OK) {
            fprintf(stderr, "payi: warning: %s; scanning the segment for them\n", err.msg);
            ids_from_segment(log, &ib->seg);
            continue;
        }
        for (size_t i = 0; i < ib->n; i++) {
            payi_uuid id;
            uint64_t position;
            memcpy(id.b, ib->entries + 24 * i, 16);
            memcpy(&position, ib->entries + 24 * i + 16, 8);
            ids_insert(&log->ids, &id, position);
        }
        free(ib->entries);
        ib->entries = NULL;
    }
    pthread_mutex_lock(&log->mu);
    log->ids_ready = true;
    pthread_cond_broadcast(&log->done_cond);
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

static payi_code start_id_loader(payi_log *log, payi_err *err)
{
    take_id_batches(log);
    if (log->n_id_batches == 0) {
        log->ids_ready = true;
        return PAYI_OK;
    }
    if (pthread_create(&log->loader, NULL, id_loader_main, log) != 0)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "cannot start the id loader thread");
    log->loader_started = true;
    return PAYI_OK;
}

/* The writer, before it looks up a client id. */
static void wait_ids_ready(payi_log *log)
{
    pthread_mutex_lock(&log->mu);
    while (!log->ids_ready)
        pthread_cond_wait(&log->done_cond, &log->mu);
    pthread_mutex_unlock(&log->mu);
}

static payi_code ensure_dir(const char *dir, payi_err *err)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return payi_err_set(err, PAYI_IO, NULL, "data directory %s exists and is not a directory", dir);
        return PAYI_OK;
    }
    if (mkdir(dir, 0755) != 0)
        return payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot create data directory %s", dir);
    return PAYI_OK;
}

static payi_log *log_alloc(const char *dir, const log_options *opt)
{
    payi_log *log = xcalloc(1, sizeof *log);
    log->dir = xstrdup(dir);
    if (opt)
        log->opt = *opt;
    else
        log_options_default(&log->opt);
    log->lock_fd = log->head_fd = log->inotify_fd = -1;
    pthread_rwlock_init(&log->rw, NULL);
    pthread_mutex_init(&log->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->work_cond, &ca);
    pthread_cond_init(&log->done_cond, &ca);
    pthread_cond_init(&log->commit_cond, &ca);
    pthread_condattr_destroy(&ca);
    streams_init(&log->streams);
    ids_init(&log->ids);
    log->state = PAYI_OK;
    log->last_sync_ns = time_mono_ns();
    return log;
}

static uint64_t ro_head_limit(payi_log *log);

payi_code log_open(payi_log **out, const char *dir, const log_options *opt, payi_err *err)
{
    *out = NULL;
    payi_log *log = log_alloc(dir, opt);
    payi_code rc;
    if (log->opt.read_only) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = payi_err_set(err, PAYI_NOT_FOUND, NULL, "no data directory at %s", dir);
        else
            rc = open_head_file(log, err);
    } else {
        rc = ensure_dir(dir, err);
        if (rc == PAYI_OK)
            rc = take_lock(log, err);
        if (rc == PAYI_OK)
            rc = open_head_file(log, err);
    }
    if (rc == PAYI_OK)   /* beside a live writer, a reader shows only what it acknowledged */
        rc = load_segments(log, log->opt.read_only ? ro_head_limit(log) : UINT64_MAX, err);
    if (rc == PAYI_OK && !log->opt.read_only) {
        seg_open_direct(log->dir, active_seg(log));
        rc = load_lead_of(log, active_seg(log), err);
    }
    if (rc == PAYI_OK && !log->opt.read_only)
        rc = start_id_loader(log, err);
    if (rc == PAYI_OK && !log->opt.read_only) {
        write_head_file(log);
        if (pthread_create(&log->writer, NULL, writer_main, log) != 0)
            rc = payi_err_set(err, PAYI_INTERNAL, NULL, "cannot start the log writer thread");
        else
            log->writer_started = true;
    }
    if (rc != PAYI_OK) {
        log_close(log);
        return rc;
    }
    *out = log;
    return PAYI_OK;
}

/* A clean close cuts the active segment's zero padding, so that the file
 * ends at its last record; a crash leaves it, and the next open accepts it. */
static void trim_active(payi_log *log)
{
    if (!log->nsegs || log->failed)
        return;
    segment *seg = active_seg(log);
    if (seg->wfd >= 0 && (logio->ftruncate(seg->fd, (off_t)seg->end) != 0 || logio->fdatasync(seg->fd) != 0))
        fprintf(stderr, "payi: warning: cannot trim the last segment of %s: %s\n", log->dir, strerror(errno));
}

void log_close(payi_log *log)
{
    if (!log)
        return;
    if (log->writer_started) {
        pthread_mutex_lock(&log->mu);
        log->stopping = true;
        pthread_cond_broadcast(&log->work_cond);
        pthread_cond_broadcast(&log->commit_cond);
        pthread_mutex_unlock(&log->mu);
        pthread_join(log->writer, NULL);
        trim_active(log);
    }
    if (log->loader_started)
        pthread_join(log->loader, NULL);
    free(log->id_batches);
    for (size_t i = 0; i < log->nsegs; i++)
        seg_release(&log->segs[i]);
    free(log->segs);
    streams_release(&log->streams);
    ids_release(&log->ids);
    free(log->wbuf);
    free(log->staged);
    free(log->sappends);
    if (log->lock_fd >= 0)
        close(log->lock_fd);   /* releases the flock */
    if (log->head_fd >= 0)
        close(log->head_fd);
    if (log->inotify_fd >= 0)
        close(log->inotify_fd);
    pthread_rwlock_destroy(&log->rw);
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->work_cond);
    pthread_cond_destroy(&log->done_cond);
    pthread_cond_destroy(&log->commit_cond);
    free(log->dir);
    free(log);
}

/* ---------------------------------------------------------------- state */

payi_code log_state(payi_log *log, payi_err *err)
{
    pthread_mutex_lock(&log->mu);
    payi_code rc = log->state;
    if (rc != PAYI_OK && err)
        *err = log->state_err;
    pthread_mutex_unlock(&log->mu);
    return rc;
}

/* Enter the read-only error state (invariant 6); the first failure is kept. */
static void log_fail(payi_log *log, const payi_err *why)
{
    pthread_mutex_lock(&log->mu);
    if (log->state == PAYI_OK) {
        log->state = PAYI_READ_ONLY;
        log->failed = true;
        log->state_err = *why;
        log->state_err.code = PAYI_READ_ONLY;
        fprintf(stderr, "payi: log is now read-only: %s\n", why->msg);
    }
    pthread_mutex_unlock(&log->mu);
}

uint64_t log_head(payi_log *log) { return log->head; }

void log_get_stats(payi_log *log, log_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&log->rw);
    out->events = log->head;
    out->segments = log->nsegs;
    for (size_t i = 0; i < log->nsegs; i++)
        out->bytes += log->segs[i].end;
    out->streams = log->streams.n;
    pthread_rwlock_unlock(&log->rw);
    out->batches_written = log->batches_written;
    out->fsyncs = log->fsyncs;
    out->recovered_truncated_bytes = log->truncated_bytes;
    out->indexes_rebuilt = log->indexes_rebuilt;
}

int64_t log_stream_version(payi_log *log, const char *stream, uint32_t stream_len)
{
    pthread_rwlock_rdlock(&log->rw);
    const stream_entry *s = streams_find(&log->streams, stream, stream_len);
    int64_t v = s ? (int64_t)s->count - 1 : -1;
    pthread_rwlock_unlock(&log->rw);
    return v;
}

/* ---------------------------------------------------------------- validation */

static payi_code check_name(const char *what, const char *s, uint32_t len, payi_err *err)
{
    if (!s || len == 0)
        return payi_err_set(err, PAYI_VALIDATION, what, "%s must not be empty", what);
    if (len > REC_MAX_NAME)
        return payi_err_set(err, PAYI_VALIDATION, what, "%s is %u bytes long; the limit is %d", what, len,
                            REC_MAX_NAME);
    size_t bad;
    if (!json_utf8_valid(s, len, &bad))
        return payi_err_set(err, PAYI_VALIDATION, what, "%s is not valid UTF-8 (byte %zu)", what, bad);
    for (uint32_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return payi_err_set(err, PAYI_VALIDATION, what, "%s contains a control character at byte %u", what, i);
    return PAYI_OK;
}

payi_code log_check_stream_name(const char *stream, uint32_t len, payi_err *err)
{
    return check_name("stream", stream, len, err);
}

payi_code log_validate(const payi_log *log, const log_append *a, payi_err *err)
{
    payi_code rc = check_name("stream", a->stream, a->stream_len, err);
    if (rc != PAYI_OK)
        return rc;
    if (a->nevents == 0)
        return payi_err_set(err, PAYI_VALIDATION, "events", "an append needs at least one event");
    if (a->nevents > MAX_EVENTS_PER_APPEND)
        return payi_err_set(err, PAYI_TOO_LARGE, "events", "%u events in one append; the limit is %u", a->nevents,
                            MAX_EVENTS_PER_APPEND);
    if (a->expected < LOG_EXPECT_EXISTS)
        return payi_err_set(err, PAYI_VALIDATION, "expected_version", "invalid expected version %" PRId64,
                            a->expected);
    for (uint32_t i = 0; i < a->nevents; i++) {
        const log_event_in *e = &a->events[i];
        if ((rc = check_name("type", e->type, e->type_len, err)) != PAYI_OK)
            return rc;
        uint64_t size = (uint64_t)a->stream_len + e->type_len + e->data_len + e->meta_len;
        if (size > log->opt.max_event_size)
            return payi_err_set(err, PAYI_TOO_LARGE, "data",
                                "event of %" PRIu64 " bytes exceeds the maximum event size of %u bytes", size,
                                log->opt.max_event_size);
        if (e->has_id && uuid_is_nil(&e->id))
            return payi_err_set(err, PAYI_VALIDATION, "id", "the nil UUID cannot be an event id");
    }
    return PAYI_OK;
}

/* ---------------------------------------------------------------- writer */

#define DIO_PAGE 4096u

static unsigned char *batch_data(payi_log *log) { return log->wbuf + log->lead_len; }

/* Room for `more` batch bytes plus a page of padding; keeps lead and batch. */
static void wbuf_reserve(payi_log *log, size_t more)
{
    size_t need = log->lead_len + log->blen + more + DIO_PAGE;
    if (need <= log->wcap)
        return;
    size_t cap = log->wcap ? log->wcap : 1u << 20;
    while (cap < need)
        cap *= 2;
    void *p;
    if (posix_memalign(&p, DIO_PAGE, cap) != 0) {
        fprintf(stderr, "payi: out of memory allocating %zu bytes\n", cap);
        abort();   /* the out-of-memory policy of mem.h */
    }
    if (log->wbuf)
        memcpy(p, log->wbuf, log->lead_len + log->blen);
    free(log->wbuf);
    log->wbuf = p;
    log->wcap = cap;
}

/* Read the active segment's partial last page into lead (after open or roll). */
static payi_code load_lead_of(payi_log *log, segment *seg, payi_err *err)
{
    wbuf_reserve(log, 0);
    log->lead_len = seg->end % DIO_PAGE;
    uint64_t at = seg->end - log->lead_len;
    for (size_t got = 0; got < log->lead_len;) {
        ssize_t r = pread(seg->fd, log->wbuf + got, log->lead_len - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return payi_err_sys(err, PAYI_IO, r < 0 ? errno : EIO, "cannot read the last page of a segment in %s",
                                log->dir);
        got += (size_t)r;
    }
    return PAYI_OK;
}

/* Write the batch.  With O_DIRECT: from the start of the page holding the
 * segment's end, the partial page, the batch and zeros up to a page boundary.
 * Rewriting the bytes of the partial page is safe: they are the same bytes,
 * so a torn write of that page still holds them. */
static int write_batch(payi_log *log, segment *seg)
{
    if (seg->wfd < 0)
        return logio_write_all(seg->fd, batch_data(log), log->blen, seg->end);
    size_t used = log->lead_len + log->blen;
    size_t total = (used + DIO_PAGE - 1) / DIO_PAGE * DIO_PAGE;   /* wbuf_reserve kept a page of room */
    memset(log->wbuf + used, 0, total - used);
    return logio_write_all(seg->wfd, log->wbuf, total, seg->end - log->lead_len);
}

/* After a successful write: the new partial page becomes the lead. */
static void keep_lead(payi_log *log)
{
    size_t used = log->lead_len + log->blen;
    size_t len = used % DIO_PAGE;
    memmove(log->wbuf, log->wbuf + (used - len), len);
    log->lead_len = len;
}

static void staged_reset(payi_log *log)
{
    log->blen = 0;
    log->nstaged = 0;
    log->nsappends = 0;
}

/* Undo everything staged: nothing of it was published. */
static void staged_undo(payi_log *log, payi_code code, const payi_err *why)
{
    for (size_t i = log->nstaged; i-- > 0;) {
        const staged_rec *r = &log->staged[i];
        stream_entry *s = log->streams.items[r->stream_num];
        s->pending = s->count;
        if (r->flags & REC_F_CLIENT_ID)
            ids_remove(&log->ids, &r->id, r->position);
    }
    for (size_t i = 0; i < log->nsappends; i++) {
        log_append *a = log->sappends[i].append;
        a->status = code;
        a->err = *why;
        a->err.code = code;
        log->sappends[i].sub->failed = true;
    }
    log->next_pos = log->head;
    staged_reset(log);
}

/* Publish a durable batch to readers: indexes first, then head, then wake. */
static void staged_publish(payi_log *log)
{
    segment *seg = active_seg(log);
    uint64_t base = seg->end;
    pthread_rwlock_wrlock(&log->rw);
    for (size_t i = 0; i < log->nstaged; i++) {
        const staged_rec *r = &log->staged[i];
        rec_view v = {.position = r->position, .flags = r->flags, .id = r->id, .total_len = r->total_len};
        seg_add_record(seg, base + r->buf_off, r->stream_num, &v);
        stream_push(log->streams.items[r->stream_num], r->position);
    }
    log->head = log->next_pos;
    pthread_rwlock_unlock(&log->rw);
    pthread_mutex_lock(&log->mu);
    pthread_cond_broadcast(&log->commit_cond);
    pthread_mutex_unlock(&log->mu);
    write_head_file(log);
    staged_reset(log);
}

static payi_code sync_segment(payi_log *log, segment *seg, payi_err *err)
{
    if (logio->fdatasync(seg->fd) != 0) {
        char path[4096];
        seg_path(path, sizeof path, log->dir, seg->first, "seg");
        return payi_err_sys(err, PAYI_IO, errno, "fdatasync of %s failed", path);
    }
    log->fsyncs++;
    log->last_sync_ns = time_mono_ns();
    log->dirty = false;
    return PAYI_OK;
}

/* Mark the batch's last record (invariant 3) and fix its checksum. */
static void seal_batch_end(payi_log *log)
{
    staged_rec *last = &log->staged[log->nstaged - 1];
    unsigned char *p = batch_data(log) + last->buf_off;
    last->flags |= REC_F_BATCH_END;
    p[64] = last->flags;
    rec_reseal(p);
}

/* A write failed: give the file back its last good length.  True when that
 * worked, so the log can stay writable (ENOSPC). */
static bool rewind_segment(segment *seg) { return logio->ftruncate(seg->fd, (off_t)seg->end) == 0; }

/* Write, sync and publish the current batch. */
static payi_code flush_batch(payi_log *log)
{
    if (log->nstaged == 0)
        return PAYI_OK;
    seal_batch_end(log);
    segment *seg = active_seg(log);
    char path[4096];
    payi_err err;
    if (write_batch(log, seg) != 0) {
        int e = errno;
        seg_path(path, sizeof path, log->dir, seg->first, "seg");
        payi_code code = payi_code_from_errno(e);
        bool rewound = rewind_segment(seg);
        if (code == PAYI_NOSPACE && rewound) {
            payi_err_sys(&err, PAYI_NOSPACE, e, "no space left to append to %s; nothing was written", path);
            staged_undo(log, PAYI_NOSPACE, &err);
            return PAYI_NOSPACE;
        }
        payi_err_sys(&err, PAYI_IO, e, "write to %s failed", path);
        log_fail(log, &err);
        staged_undo(log, PAYI_IO, &err);
        return PAYI_IO;
    }
    log->batches_written++;
    log->dirty = true;
    bool sync_now = log->opt.durability == LOG_DURABLE_FSYNC ||
                    (log->opt.durability == LOG_DURABLE_INTERVAL &&
                     time_mono_ns() - log->last_sync_ns >= (int64_t)log->opt.interval_ms * 1000000);
    if (sync_now && sync_segment(log, seg, &err) != PAYI_OK) {
        log_fail(log, &err);
        staged_undo(log, PAYI_IO, &err);
        return PAYI_IO;
    }
    keep_lead(log);
    staged_publish(log);
    return PAYI_OK;
}

/* Seal the active segment and start a new one at next_pos. */
static payi_code roll_segment(payi_log *log, payi_err *err)
{
    segment *old = active_seg(log);
    if (log->dirty && sync_segment(log, old, err) != PAYI_OK) {
        log_fail(log, err);
        return PAYI_IO;
    }
    /* Cut the zero padding of the last page: a sealed segment ends at its last
     * record, which its .idx checks against the file size. */
    payi_err ierr;
    if (logio->ftruncate(old->fd, (off_t)old->end) != 0)
        fprintf(stderr, "payi: warning: cannot trim a sealed segment in %s: %s\n", log->dir, strerror(errno));
    else if (seg_write_index(log->dir, old, &log->streams, &ierr) != PAYI_OK)
        fprintf(stderr, "payi: warning: %s (the segment will be scanned at next open)\n", ierr.msg);
    segment fresh;
    payi_code rc = seg_create(log->dir, log->next_pos, &fresh, err);
    if (rc == PAYI_OK) {
        seg_open_direct(log->dir, &fresh);
        rc = load_lead_of(log, &fresh, err);
        if (rc != PAYI_OK)
            seg_release(&fresh);
    }
    if (rc != PAYI_OK) {
        if (rc != PAYI_NOSPACE)
            log_fail(log, err);
        return rc;   /* on ENOSPC the old segment stays active and grows */
    }
    if (old->wfd >= 0) {
        close(old->wfd);
        old->wfd = -1;
    }
    free(old->stream_nums);
    free(old->cids);
    old->stream_nums = NULL;
    old->cids = NULL;
    old->stream_nums_cap = old->ncids = old->cids_cap = 0;
    segment *s = push_segment(log);
    pthread_rwlock_wrlock(&log->rw);
    *s = fresh;
    pthread_rwlock_unlock(&log->rw);
    return PAYI_OK;
}

static void append_fail(log_append *a, payi_code code, const payi_err *err)
{
    a->status = code;
    a->err = *err;
    a->err.code = code;
}

/* A fingerprint hit of the id table, confirmed by reading the original
 * event once; the record read is kept for the caller (stream, version). */
typedef struct dup_probe {
    payi_log *log;
    buf b;
    rec_view r;
} dup_probe;

static bool id_at(void *ctx, uint64_t position, const payi_uuid *id);

/* All events repeated (return the originals), all new (append), or a mix (refuse). */
static payi_code check_duplicates(payi_log *log, log_append *a, bool *all_dup, payi_err *err)
{
    uint32_t dups = 0;
    for (uint32_t i = 0; i < a->nevents; i++)
        if (a->events[i].has_id) {
            wait_ids_ready(log);
            break;
        }
    dup_probe probe = {.log = log, .b = BUF_INIT};
    payi_code rc = PAYI_OK;
    for (uint32_t i = 0; i < a->nevents && rc == PAYI_OK; i++) {
        log_event_in *e = &a->events[i];
        uint64_t pos;
        e->duplicate = e->has_id && ids_find(&log->ids, &e->id, id_at, &probe, &pos);
        if (!e->duplicate)
            continue;
        e->position = pos;
        e->version = probe.r.version;
        dups++;
        if (probe.r.stream_len != a->stream_len || memcmp(probe.r.stream, a->stream, a->stream_len) != 0) {
            char id[UUID_STR_LEN + 1];
            uuid_format(&e->id, id);
            rc = payi_err_set(err, PAYI_VALIDATION, "id",
                              "event id %s was already used at position %" PRIu64
                              " by another stream; an id identifies one event of one stream",
                              id, pos);
        }
    }
    buf_release(&probe.b);
    if (rc != PAYI_OK)
        return rc;
    *all_dup = dups == a->nevents;
    if (dups && !*all_dup)
        return payi_err_set(err, PAYI_VALIDATION, "id",
                            "%u of the %u events carry ids that were already appended; an atomic append must "
                            "repeat all of its events or none",
                            dups, a->nevents);
    return PAYI_OK;
}

static payi_code check_expected(const log_append *a, uint64_t have, payi_err *err)
{
    int64_t actual = (int64_t)have - 1;
    bool ok = a->expected == LOG_EXPECT_ANY || (a->expected == LOG_EXPECT_NO_STREAM && have == 0) ||
              (a->expected == LOG_EXPECT_EXISTS && have > 0) || (a->expected >= 0 && a->expected == actual);
    if (ok)
        return PAYI_OK;
    char want[48];
    if (a->expected == LOG_EXPECT_NO_STREAM)
        snprintf(want, sizeof want, "expected_version \"no_stream\"");
    else if (a->expected == LOG_EXPECT_EXISTS)
        snprintf(want, sizeof want, "expected_version \"exists\"");
    else
        snprintf(want, sizeof want, "expected version %" PRId64, a->expected);
    if (have == 0)
        return payi_err_set(err, PAYI_CONFLICT, "expected_version",
                            "%s, but stream \"%.*s\" does not exist (actual version -1)", want, (int)a->stream_len,
                            a->stream);
    return payi_err_set(err, PAYI_CONFLICT, "expected_version", "%s, but stream \"%.*s\" is at version %" PRId64,
                        want, (int)a->stream_len, a->stream, actual);
}

static size_t append_bytes(const log_append *a)
{
    size_t n = 0;
    for (uint32_t i = 0; i < a->nevents; i++)
        n += rec_size(a->stream_len, a->events[i].type_len, a->events[i].meta_len, a->events[i].data_len);
    return n;
}

/* Make room: an append never spans a segment boundary (nor a batch). */
static payi_code make_room(payi_log *log, size_t need, payi_err *err)
{
    segment *seg = active_seg(log);
    uint64_t used = seg->end + log->blen;
    if (used + need <= log->opt.segment_size || used == SEG_HEADER_SIZE)
        return PAYI_OK;
    payi_code rc = flush_batch(log);
    if (rc != PAYI_OK)
        return log_state(log, err) != PAYI_OK ? PAYI_READ_ONLY
                                              : payi_err_set(err, rc, NULL, "the batch before this append failed");
    return roll_segment(log, err);
}

/* Adding a stream changes the table readers search: under the write lock. */
static stream_entry *writer_new_stream(payi_log *log, const char *name, uint32_t len)
{
    uint32_t num;
    pthread_rwlock_wrlock(&log->rw);
    stream_entry *s = streams_get(&log->streams, name, len, &num);
    pthread_rwlock_unlock(&log->rw);
    return s;
}

static void encode_events(payi_log *log, log_append *a, stream_entry *s)
{
    if (log->nstaged == 0)   /* one clock read per batch: its events share the commit time */
        log->batch_time = time_now_ns();
    int64_t now = log->batch_time;
    uint64_t num = s->num, batch_first = log->head;
    for (uint32_t i = 0; i < a->nevents; i++) {
        log_event_in *e = &a->events[i];
        rec_view r = {
            .position = log->next_pos++,
            .time_ns = now,
            .version = s->pending++,
            .stream = a->stream,
            .stream_len = (uint16_t)a->stream_len,
            .type = e->type,
            .type_len = (uint16_t)e->type_len,
            .meta = e->meta,
            .meta_len = e->meta_len,
            .data = e->data,
            .data_len = e->data_len,
        };
        r.batch_index = (uint32_t)(r.position - batch_first);
        s->last_id = e->id;
        s->last_id_known = true;
        r.flags = (uint8_t)(e->encoding << REC_ENC_SHIFT);
        if (e->has_id) {
            r.id = e->id;
            r.flags |= REC_F_CLIENT_ID;
            ids_insert(&log->ids, &e->id, r.position);
        } else {
            r.id = e->id;   /* generated by log_submit */
        }
        size_t size = rec_size(r.stream_len, r.type_len, r.meta_len, r.data_len);
        wbuf_reserve(log, size);
        log->staged = xgrow(log->staged, &log->staged_cap, log->nstaged + 1, sizeof *log->staged);
        log->staged[log->nstaged++] = (staged_rec){
            .position = r.position,
            .buf_off = log->blen,
            .stream_num = (uint32_t)num,
            .total_len = (uint32_t)(REC_HEADER_SIZE + r.stream_len + r.type_len + r.meta_len + r.data_len),
            .flags = r.flags,
            .id = r.id,
        };
        log->blen += rec_encode(&r, e->body_crc, batch_data(log) + log->blen);
        e->position = r.position;
        e->version = r.version;
        e->time_ns = now;
        e->duplicate = false;
    }
}

/* Decide one append against the state including everything staged, and
 * stage its records.  Its status is final unless the batch write fails. */
static void stage_append(payi_log *log, log_append *a, log_submission *sub)
{
    payi_err err;
    a->actual_version = -1;
    if (log->failed && log_state(log, &err) != PAYI_OK)
        return append_fail(a, PAYI_READ_ONLY, &err);
    bool all_dup;
    if (check_duplicates(log, a, &all_dup, &err) != PAYI_OK)
        return append_fail(a, PAYI_VALIDATION, &err);
    if (a->probe && !all_dup) {
        payi_err_set(&err, PAYI_NOT_FOUND, "id", "no event has this id");
        return append_fail(a, PAYI_NOT_FOUND, &err);
    }
    if (all_dup) {
        bool staged = false;
        for (uint32_t i = 0; i < a->nevents; i++)   /* versions were read by check_duplicates */
            staged |= a->events[i].position >= log->head;
        a->status = PAYI_OK;
        if (staged) {   /* the original is in this batch: share its fate */
            log->sappends = xgrow(log->sappends, &log->sappends_cap, log->nsappends + 1, sizeof *log->sappends);
            log->sappends[log->nsappends++] = (staged_append){a, sub};
        }
        return;
    }
    stream_entry *s = streams_find(&log->streams, a->stream, a->stream_len);   /* the writer may look unlocked */
    uint64_t have = s ? s->pending : 0;
    a->actual_version = (int64_t)have - 1;
    payi_code rc = check_expected(a, have, &err);
    if (rc == PAYI_OK && a->check_prev && a->expected >= 0 && s && s->last_id_known &&
        memcmp(&s->last_id, &a->prev_id, sizeof a->prev_id) != 0)
        rc = payi_err_set(&err, PAYI_CONFLICT, "expected_version",
                          "stream \"%.*s\" is at version %" PRId64 " but its last event is not the one this "
                          "append was decided after", (int)(a->stream_len < 200 ? a->stream_len : 200), a->stream,
                          a->actual_version);
    if (rc == PAYI_OK)
        rc = make_room(log, append_bytes(a), &err);
    if (rc != PAYI_OK)
        return append_fail(a, rc, &err);
    if (!s)
        s = writer_new_stream(log, a->stream, a->stream_len);
    encode_events(log, a, s);
    a->status = PAYI_OK;
    log->sappends = xgrow(log->sappends, &log->sappends_cap, log->nsappends + 1, sizeof *log->sappends);
    log->sappends[log->nsappends++] = (staged_append){a, sub};
}

static void process_submission(payi_log *log, log_submission *sub)
{
    for (uint32_t i = 0; i < sub->n; i++) {
        log_append *a = &sub->appends[i];
        if (sub->stop_at_error && sub->failed) {
            payi_err err;
            payi_err_set(&err, PAYI_CANCELLED, NULL, "not attempted: an earlier append of the same submission failed");
            append_fail(a, PAYI_CANCELLED, &err);
            continue;
        }
        stage_append(log, a, sub);
        if (a->status != PAYI_OK)
            sub->failed = true;
    }
}

/* Wake the submitters of a committed list, each on its own condition: one
 * shared broadcast woke every waiting thread for every batch, most of them
 * for nothing.  next is read before the waiter can run and free s. */
static void complete(payi_log *log, log_submission *list)
{
    log_submission *calls = NULL, **tail = &calls;
    pthread_mutex_lock(&log->mu);
    for (log_submission *s = list, *next; s; s = next) {
        next = s->next;
        if (s->done_fn) {   /* called below, without the lock: the callback may take its own */
            s->next = NULL;
            *tail = s;
            tail = &s->next;
            continue;
        }
        s->done = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&log->mu);
    for (log_submission *s = calls, *next; s; s = next) {
        next = s->next;
        s->done_fn(s->done_ctx);
        pthread_cond_destroy(&s->cond);
        free(s);
    }
}

/* interval mode: the time left before the dirty data must be synced */
static bool sync_due_wait(payi_log *log, struct timespec *deadline)
{
    if (!log->dirty || log->opt.durability != LOG_DURABLE_INTERVAL)
        return false;
    int64_t due = log->last_sync_ns + (int64_t)log->opt.interval_ms * 1000000;
    deadline->tv_sec = due / 1000000000;
    deadline->tv_nsec = due % 1000000000;
    return true;
}

static void *writer_main(void *arg)
{
    payi_log *log = arg;
    thread_set_name("log-writer", "");
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (!log->queue && !log->stopping) {
            struct timespec deadline;
            if (!sync_due_wait(log, &deadline)) {
                pthread_cond_wait(&log->work_cond, &log->mu);
                continue;
            }
            if (pthread_cond_timedwait(&log->work_cond, &log->mu, &deadline) == ETIMEDOUT) {
                pthread_mutex_unlock(&log->mu);
                payi_err err;
                if (sync_segment(log, active_seg(log), &err) != PAYI_OK)
                    log_fail(log, &err);
                pthread_mutex_lock(&log->mu);
            }
        }
        if (!log->queue)
            break;
        log_submission *list = log->queue;
        log->queue = log->queue_tail = NULL;
        pthread_mutex_unlock(&log->mu);
        for (log_submission *s = list; s; s = s->next)
            process_submission(log, s);
        flush_batch(log);
        complete(log, list);
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    payi_err err;
    if (log->dirty && log->opt.durability != LOG_DURABLE_NONE && sync_segment(log, active_seg(log), &err) != PAYI_OK)
        log_fail(log, &err);
    return NULL;
}

/* The per-event work that needs no log state runs here, in the caller's
 * thread, in parallel with the writer: body checksums and generated ids. */
static void prepare_events(log_append *a)
{
    for (uint32_t i = 0; i < a->nevents; i++) {
        log_event_in *e = &a->events[i];
        rec_view body = {.stream = a->stream, .stream_len = (uint16_t)a->stream_len, .type = e->type,
                         .type_len = (uint16_t)e->type_len, .meta = e->meta, .meta_len = e->meta_len,
                         .data = e->data, .data_len = e->data_len};
        e->body_crc = rec_body_crc(&body);
        if (!e->has_id)
            uuid_generate(&e->id);
    }
}

static log_submission *submit(payi_log *log, log_append *appends, uint32_t n, bool stop_at_error, log_done_fn fn,
                              void *ctx)
{
    for (uint32_t i = 0; i < n; i++)
        prepare_events(&appends[i]);
    log_submission *s = xcalloc(1, sizeof *s);
    pthread_cond_init(&s->cond, NULL);
    s->appends = appends;
    s->n = n;
    s->stop_at_error = stop_at_error;
    s->done_fn = fn;
    s->done_ctx = ctx;
    if (log->opt.read_only) {
        payi_err err;
        payi_err_set(&err, PAYI_READ_ONLY, NULL, "the log was opened read-only");
        for (uint32_t i = 0; i < n; i++)
            append_fail(&appends[i], PAYI_READ_ONLY, &err);
        if (fn) {
            fn(ctx);
            pthread_cond_destroy(&s->cond);
            free(s);
            return NULL;
        }
        s->done = true;
        return s;
    }
    pthread_mutex_lock(&log->mu);
    if (log->queue_tail)
        log->queue_tail->next = s;
    else
        log->queue = s;
    log->queue_tail = s;
    pthread_cond_signal(&log->work_cond);
    pthread_mutex_unlock(&log->mu);
    return s;
}

log_submission *log_submit(payi_log *log, log_append *appends, uint32_t n, bool stop_at_error)
{
    return submit(log, appends, n, stop_at_error, NULL, NULL);
}

void log_submit_cb(payi_log *log, log_append *appends, uint32_t n, bool stop_at_error, log_done_fn done, void *ctx)
{
    submit(log, appends, n, stop_at_error, done, ctx);
}

uint64_t log_wait_head(payi_log *log, uint64_t seen, int timeout_ms)
{
    if (log->opt.read_only)
        return log->head;
    int64_t deadline = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    pthread_mutex_lock(&log->mu);
    if (log->head <= seen && !log->stopping)
        pthread_cond_timedwait(&log->commit_cond, &log->mu, &ts);
    uint64_t head = log->head;
    pthread_mutex_unlock(&log->mu);
    return head;
}

payi_code log_wait(payi_log *log, log_submission *s)
{
    pthread_mutex_lock(&log->mu);
    while (!s->done)
        pthread_cond_wait(&s->cond, &log->mu);
    pthread_mutex_unlock(&log->mu);
    payi_code rc = PAYI_OK;
    for (uint32_t i = 0; i < s->n && rc == PAYI_OK; i++)
        rc = s->appends[i].status;
    pthread_cond_destroy(&s->cond);
    free(s);
    return rc;
}

payi_code log_append_one(payi_log *log, log_append *a)
{
    return log_wait(log, log_submit(log, a, 1, false));
}

/* ---------------------------------------------------------------- reads */

/* Where the record at position lives: segment fd, offset and length. */
/* The segment holding published position, or NULL; the caller holds
 * log->rw. */
static const segment *segment_of(const payi_log *log, uint64_t position)
{
    size_t lo = 0, hi = log->nsegs;
    while (hi - lo > 1) {   /* last segment with first <= position */
        size_t mid = (lo + hi) / 2;
        if (log->segs[mid].first <= position)
            lo = mid;
        else
            hi = mid;
    }
    if (!log->nsegs || position >= log->head)
        return NULL;
    const segment *g = &log->segs[lo];
    return position >= g->first && position - g->first < g->count ? g : NULL;
}

static bool locate(payi_log *log, uint64_t position, int *fd, uint64_t *off, uint64_t *len, uint64_t *seg_end,
                   uint64_t *seg_first)
{
    pthread_rwlock_rdlock(&log->rw);
    const segment *g = segment_of(log, position);
    if (g) {
        uint64_t i = position - g->first;
        *fd = g->fd;
        *seg_first = g->first;
        *off = g->offsets[i];
        *seg_end = g->end;
        *len = (i + 1 < g->count ? g->offsets[i + 1] : g->end) - *off;
    }
    pthread_rwlock_unlock(&log->rw);
    return g != NULL;
}

/* Fill s's window from position s->next: as many index entries of its
 * segment as are published, up to SUB_WINDOW.  False when there is no event
 * there. */
static bool locate_window(payi_log *log, log_sub *s)
{
    uint64_t position = s->next;
    s->win_n = 0;
    pthread_rwlock_rdlock(&log->rw);
    const segment *g = segment_of(log, position);
    if (g) {
        uint64_t i = position - g->first;
        uint64_t n = g->count - i;
        if (n > log->head - position)
            n = log->head - position;
        if (n > SUB_WINDOW)
            n = SUB_WINDOW;
        for (uint64_t j = 0; j < n; j++)
            s->win_off[j] = g->offsets[i + j];
        s->win_off[n] = i + n < g->count ? g->offsets[i + n] : g->end;
        s->win_first = position;
        s->win_n = (uint32_t)n;
        s->win_fd = g->fd;
        s->win_seg_first = g->first;
        s->win_seg_end = g->end;
    }
    pthread_rwlock_unlock(&log->rw);
    return g != NULL;
}

static payi_code pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *c = p;
    while (n) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return PAYI_IO;
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return PAYI_OK;
}

static void fill_event(log_event *ev, const rec_view *r)
{
    ev->position = ev->offset = r->position;
    ev->partition = 0;
    ev->stream = r->stream;
    ev->stream_len = r->stream_len;
    ev->version = r->version;
    ev->type = r->type;
    ev->type_len = r->type_len;
    ev->id = r->id;
    ev->time_ns = r->time_ns;
    ev->encoding = (uint8_t)(r->flags >> REC_ENC_SHIFT);
    ev->data = r->data;
    ev->data_len = r->data_len;
    ev->meta = r->meta;
    ev->meta_len = r->meta_len;
}

static payi_code decode_checked(payi_log *log, const unsigned char *p, size_t avail, uint64_t position,
                                uint64_t seg_first, uint64_t off, rec_view *r, payi_err *err)
{
    rec_status st = rec_decode(p, avail, max_record_total(&log->opt), r);
    if (st == REC_OK && r->position == position)
        return PAYI_OK;
    char path[4096];
    seg_path(path, sizeof path, log->dir, seg_first, "seg");
    return payi_err_set(err, PAYI_CORRUPT, NULL, "corruption in %s at byte offset %" PRIu64 " (position %" PRIu64 "): %s",
                        path, off, position, st == REC_OK ? "position mismatch" : rec_status_text(st));
}

/* Read one record (CRC verified) into b. */
static payi_code read_record(payi_log *log, uint64_t position, buf *b, rec_view *r, payi_err *err)
{
    int fd;
    uint64_t off, len, end, first;
    if (!locate(log, position, &fd, &off, &len, &end, &first))
        return payi_err_set(err, PAYI_NOT_FOUND, NULL, "no event at position %" PRIu64, position);
    buf_reset(b);
    buf_reserve(b, len);
    if (pread_all(fd, b->data, len, off) != PAYI_OK)
        return payi_err_sys(err, PAYI_IO, errno, "cannot read position %" PRIu64 " in %s", position, log->dir);
    return decode_checked(log, (const unsigned char *)b->data, len, position, first, off, r, err);
}

/* The event at position as the writer sees it: staged records come from the
 * batch buffer, the others from disk.  Only for repeated ids: rare. */
static bool writer_record_at(payi_log *log, uint64_t position, buf *b, rec_view *r)
{
    if (position >= log->head) {
        if (position - log->head >= log->nstaged)
            return false;
        const staged_rec *s = &log->staged[position - log->head];
        return rec_decode(batch_data(log) + s->buf_off, rec_padded(s->total_len), UINT32_MAX,
                          r) == REC_OK;
    }
    payi_err err;
    return read_record(log, position, b, r, &err) == PAYI_OK;
}

static bool id_at(void *ctx, uint64_t position, const payi_uuid *id)
{
    dup_probe *p = ctx;
    return writer_record_at(p->log, position, &p->b, &p->r) && memcmp(p->r.id.b, id->b, 16) == 0;
}

payi_code log_read_stream(payi_log *log, const char *stream, uint32_t stream_len, uint64_t from, uint64_t limit,
                          bool backwards, log_event_fn fn, void *ctx, payi_err *err)
{
    /* Copy the positions wanted under the lock; read records without it. */
    uint64_t *want = NULL, n = 0;
    pthread_rwlock_rdlock(&log->rw);
    const stream_entry *s = streams_find(&log->streams, stream, stream_len);
    uint64_t count = s ? s->count : 0;
    if (count && !backwards && from < count) {
        n = count - from;
        if (limit && n > limit)
            n = limit;
        want = xmalloc(n * sizeof *want);
        memcpy(want, s->positions + from, n * sizeof *want);
    } else if (count && backwards) {
        uint64_t top = from >= count ? count - 1 : from;
        n = top + 1;
        if (limit && n > limit)
            n = limit;
        want = xmalloc(n * sizeof *want);
        for (uint64_t i = 0; i < n; i++)
            want[i] = s->positions[top - i];
    }
    pthread_rwlock_unlock(&log->rw);
    buf b = BUF_INIT;
    payi_code rc = PAYI_OK;
    for (uint64_t i = 0; i < n && rc == PAYI_OK; i++) {
        rec_view r;
        log_event ev;
        if (want[i] >= log->head)
            break;   /* read-only log: indexed but not yet acknowledged */
        rc = read_record(log, want[i], &b, &r, err);
        if (rc == PAYI_OK) {
            fill_event(&ev, &r);
            if (fn(ctx, &ev) != 0)
                break;
        }
    }
    buf_release(&b);
    free(want);
    return rc;
}

payi_code log_read_all(payi_log *log, uint64_t from, uint64_t limit, bool backwards, log_event_fn fn, void *ctx,
                       payi_err *err)
{
    uint64_t head = log->head;
    if (!backwards) {
        log_cursor cur;
        log_cursor_at(&cur, from);
        log_sub *s = log_sub_open(log, &cur);
        payi_code rc = PAYI_OK;
        log_event ev;
        for (uint64_t n = 0; (!limit || n < limit) && s->next < head; n++) {
            if ((rc = log_sub_next(s, &ev, 0, err)) != PAYI_OK || fn(ctx, &ev) != 0)
                break;
        }
        log_sub_close(s);
        return rc == PAYI_TIMEOUT ? PAYI_OK : rc;
    }
    if (head == 0)
        return PAYI_OK;
    buf b = BUF_INIT;
    payi_code rc = PAYI_OK;
    uint64_t top = from >= head ? head - 1 : from;
    for (uint64_t n = 0, pos = top; !limit || n < limit; n++, pos--) {
        rec_view r;
        log_event ev;
        if ((rc = read_record(log, pos, &b, &r, err)) != PAYI_OK)
            break;
        fill_event(&ev, &r);
        if (fn(ctx, &ev) != 0 || pos == 0)
            break;
    }
    buf_release(&b);
    return rc;
}

/* ---------------------------------------------------------------- read-only logs beside a writer */

/* When a writer holds the lock, HEAD bounds what it acknowledged; without
 * one, every complete batch on disk is acknowledged or recoverable as such. */
static uint64_t ro_head_limit(payi_log *log)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", log->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return UINT64_MAX;
    bool writer_alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);   /* also drops the shared lock if we got it */
    uint64_t h;
    if (!writer_alive || log->head_fd < 0 || pread(log->head_fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return UINT64_MAX;
    return h;
}

/* Index what the writer added since we last looked, up to its head. */
static payi_code ro_refresh(payi_log *log, payi_err *err)
{
    if (log->head_fd < 0)
        open_head_file(log, err);
    uint64_t limit = ro_head_limit(log);
    if (log->nsegs == 0) {   /* a directory no writer has used yet: wait for its first segment */
        segment first;
        payi_err ignore;
        if (seg_open(log->dir, 0, false, &first, &ignore) != PAYI_OK)
            return PAYI_OK;
        segment *s0 = push_segment(log);
        pthread_rwlock_wrlock(&log->rw);
        *s0 = first;
        pthread_rwlock_unlock(&log->rw);
    }
    for (;;) {
        segment *seg = active_seg(log);
        uint64_t before = seg->first + seg->count;
        payi_code rc = load_active(log, seg, limit, err);
        if (rc != PAYI_OK)
            return rc;
        uint64_t now = seg->first + seg->count;
        log->head = now;
        if (now >= limit)
            break;
        /* The writer may have rolled: continue in the next segment if it exists. */
        segment next;
        payi_err ignore;
        if (seg_open(log->dir, now, false, &next, &ignore) != PAYI_OK) {
            if (now == before)
                break;
            continue;
        }
        segment *s = push_segment(log);
        pthread_rwlock_wrlock(&log->rw);
        *s = next;
        pthread_rwlock_unlock(&log->rw);
    }
    return PAYI_OK;
}

#define RO_POLL_MS 50   /* only when inotify is unavailable (its per-user limits are exhausted) */

/* Sleep until the directory changes or the timeout expires.  inotify wakes us
 * when the writer writes HEAD; when the kernel refuses an inotify instance or
 * watch, fall back to looking every RO_POLL_MS. */
static payi_code ro_wait(payi_log *log, int timeout_ms, payi_err *err)
{
    (void)err;
    if (log->inotify_fd == -1) {
        int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (fd >= 0 && inotify_add_watch(fd, log->dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0) {
            close(fd);
            fd = -1;
        }
        log->inotify_fd = fd >= 0 ? fd : -2;
        return PAYI_OK;   /* something may have changed before the watch began: look again now */
    }
    if (log->inotify_fd == -2) {
        int ms = timeout_ms < 0 || timeout_ms > RO_POLL_MS ? RO_POLL_MS : timeout_ms;
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        return PAYI_OK;
    }
    struct pollfd p = {.fd = log->inotify_fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    char drain[4096];
    while (read(log->inotify_fd, drain, sizeof drain) > 0) {
    }
    return r > 0 ? PAYI_OK : PAYI_TIMEOUT;
}

/* ---------------------------------------------------------------- subscriptions */

log_sub *log_sub_open(payi_log *log, const log_cursor *from)
{
    log_sub *s = xcalloc(1, sizeof *s);
    s->log = log;
    s->next = from && from->nparts ? from->next[0] : 0;
    s->chunk_fd = -1;
    return s;
}

void log_sub_cursor(const log_sub *s, log_cursor *out) { log_cursor_at(out, s->next); }

void log_sub_close(log_sub *s)
{
    if (!s)
        return;
    buf_release(&s->chunk);
    free(s);
}

/* Wait until head passes s->next or the timeout expires. */
static payi_code sub_wait(log_sub *s, int timeout_ms, payi_err *err)
{
    payi_log *log = s->log;
    int64_t deadline = time_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (log->head <= s->next) {
        int64_t left_ms = timeout_ms < 0 ? -1 : (deadline - time_mono_ns()) / 1000000;
        if (timeout_ms >= 0 && left_ms <= 0)
            return PAYI_TIMEOUT;
        if (log->opt.read_only) {
            payi_code rc = ro_refresh(log, err);
            if (rc != PAYI_OK)
                return rc;
            if (log->head > s->next)
                break;
            rc = ro_wait(log, (int)(left_ms < 0 ? 1000 : left_ms), err);
            if (rc != PAYI_OK && rc != PAYI_TIMEOUT)
                return rc;
            continue;
        }
        pthread_mutex_lock(&log->mu);
        if (log->head <= s->next && !log->stopping) {
            if (timeout_ms < 0) {
                pthread_cond_wait(&log->commit_cond, &log->mu);
            } else {
                struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
                pthread_cond_timedwait(&log->commit_cond, &log->mu, &ts);
            }
        }
        bool stopping = log->stopping;
        pthread_mutex_unlock(&log->mu);
        if (stopping && log->head <= s->next)
            return PAYI_TIMEOUT;
    }
    return PAYI_OK;
}

payi_code log_sub_next(log_sub *s, log_event *ev, int timeout_ms, payi_err *err)
{
    payi_log *log = s->log;
    if (log->head <= s->next) {
        if (timeout_ms == 0 && !log->opt.read_only)
            return PAYI_TIMEOUT;
        payi_code rc = sub_wait(s, timeout_ms, err);
        if (rc != PAYI_OK)
            return rc;
    }
    if ((s->next < s->win_first || s->next - s->win_first >= s->win_n) && !locate_window(log, s))
        return payi_err_set(err, PAYI_NOT_FOUND, NULL, "no event at position %" PRIu64, s->next);
    uint64_t k = s->next - s->win_first;
    int fd = s->win_fd;
    uint64_t off = s->win_off[k], len = s->win_off[k + 1] - off, seg_end = s->win_seg_end,
             seg_first = s->win_seg_first;
    /* Serve from the chunk when it holds the record; else read ahead. */
    if (fd != s->chunk_fd || off < s->chunk_off || off + len > s->chunk_off + s->chunk.len) {
        uint64_t want = seg_end - off;
        if (want > READ_CHUNK)
            want = READ_CHUNK > len ? READ_CHUNK : len;
        buf_reset(&s->chunk);
        buf_reserve(&s->chunk, want);
        if (pread_all(fd, s->chunk.data, want, off) != PAYI_OK)
            return payi_err_sys(err, PAYI_IO, errno, "cannot read position %" PRIu64 " in %s", s->next, log->dir);
        s->chunk.len = want;
        s->chunk_fd = fd;
        s->chunk_off = off;
    }
    rec_view r;
    payi_code rc = decode_checked(log, (const unsigned char *)s->chunk.data + (off - s->chunk_off), len, s->next,
                                  seg_first, off, &r, err);
    if (rc != PAYI_OK)
        return rc;
    fill_event(ev, &r);
    s->next++;
    return PAYI_OK;
}

/* ---------------------------------------------------------------- check */

typedef struct check_ctx {
    stream_table streams;
    uint64_t events;
    char problem[512];
} check_ctx;

static int check_record(void *ctx, const rec_view *r, uint64_t offset)
{
    check_ctx *c = ctx;
    uint32_t num;
    stream_entry *s = streams_get(&c->streams, r->stream, r->stream_len, &num);
    if (r->version != s->count) {
        snprintf(c->problem, sizeof c->problem,
                 "stream \"%.*s\" jumps from version %" PRIu64 " to %" PRIu64 " at position %" PRIu64
                 " (byte offset %" PRIu64 ")",
                 (int)r->stream_len, r->stream, s->count, r->version, r->position, offset);
        return 1;
    }
    s->count++;   /* check needs counts only, not positions */
    c->events++;
    return 0;
}

static payi_code check_segment(const char *dir, uint64_t first, bool last, const log_options *opt, check_ctx *c,
                               log_stats *stats, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, dir, first, "seg");
    segment seg;
    payi_code rc = seg_open(dir, first, false, &seg, err);
    if (rc != PAYI_OK)
        return rc;
    seg_scan_result res;
    rc = seg_scan(&seg, path, SEG_HEADER_SIZE, first, max_record_total(opt), UINT64_MAX, check_record, c, &res, err);
    seg_release(&seg);
    if (rc != PAYI_OK)
        return rc;
    if (c->problem[0])
        return payi_err_set(err, PAYI_CORRUPT, NULL, "%s: %s", path, c->problem);
    stats->bytes += res.end;
    if (!res.tail_problem)
        return PAYI_OK;
    if (res.corrupt || !last)
        return payi_err_set(err, PAYI_CORRUPT, NULL, "%s: corrupt record at byte offset %" PRIu64 ": %s", path,
                            res.bad_offset, res.bad_reason);
    stats->recovered_truncated_bytes = res.file_size - res.end;
    return PAYI_OK;   /* a torn tail: the next writer truncates it */
}

payi_code log_check(const char *dir, log_stats *stats, payi_err *err)
{
    memset(stats, 0, sizeof *stats);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return payi_err_set(err, PAYI_NOT_FOUND, NULL, "no data directory at %s", dir);
    log_options opt;
    log_options_default(&opt);
    opt.max_event_size = UINT32_MAX - REC_HEADER_SIZE;   /* check what is there, whatever limit wrote it */
    uint64_t *firsts;
    size_t n;
    payi_code rc = list_segments(dir, &firsts, &n, err);
    if (rc != PAYI_OK)
        return rc;
    check_ctx c = {.events = 0};
    streams_init(&c.streams);
    for (size_t i = 0; i < n && rc == PAYI_OK; i++) {
        if (firsts[i] != c.events) {
            rc = payi_err_set(err, PAYI_CORRUPT, NULL,
                              "%s/%020" PRIu64 ".seg starts at position %" PRIu64 " but the events before it end at %" PRIu64,
                              dir, firsts[i], firsts[i], c.events);
            break;
        }
        rc = check_segment(dir, firsts[i], i + 1 == n, &opt, &c, stats, err);
    }
    stats->events = c.events;
    stats->segments = n;
    stats->streams = c.streams.n;
    streams_release(&c.streams);
    free(firsts);
    return rc;
}
