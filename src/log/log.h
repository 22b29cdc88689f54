/* log.h — the event store: a durable, append-only log that is also the bus.
 *
 * Callers see events, streams, positions and subscriptions; they never see
 * files.  The interface is the same whatever stores the events: today the
 * segmented file log in this directory (one partition, position == offset);
 * later a Kafka-backed log, where events live in partitions with offsets of
 * their own.  That is why an event carries (partition, offset) beside its
 * position, and why a subscription starts from a log_cursor (one next offset
 * per partition) rather than from a bare number.
 *
 * Threads: on a writable log every function may be called from any thread.
 * Appends are serialized by one writer thread that commits everything
 * pending with one write and one fdatasync (group commit), then acknowledges
 * it.  A read-only log (a reader beside a writer process) catches up with the
 * files inside log_sub_next: use it from one thread at a time.
 *
 * Ownership: strings in a log_event borrow from memory owned by the reader
 * (a log_sub or the read callback's frame) and stay valid until the next
 * call on that reader.  Everything passed in to an append is borrowed until
 * the append completes.
 */
#ifndef PAYI_LOG_H
#define PAYI_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/uuid.h"

typedef struct payi_log payi_log;

typedef enum {
    LOG_DURABLE_FSYNC,     /* default: fdatasync before any acknowledgement */
    LOG_DURABLE_INTERVAL,  /* acknowledged once written; fdatasync at most interval_ms later */
    LOG_DURABLE_NONE,      /* never fdatasync: tests and benchmarks only */
} log_durability;

typedef struct log_options {
    log_durability durability;
    uint32_t interval_ms;     /* INTERVAL mode: the loss window on power failure (default 100) */
    uint64_t segment_size;    /* roll to a new segment past this many bytes (default 64 MiB) */
    uint32_t max_event_size;  /* stream + type + meta + data bytes (default 1 MiB) */
    bool read_only;           /* no lock, no repair, no appends: for readers beside a writer */
} log_options;

void log_options_default(log_options *o);
const char *log_durability_name(log_durability d);
bool log_durability_parse(const char *s, log_durability *out);

/* Open (creating if needed, unless read_only) the log in dir.  A writer takes
 * an exclusive lock on dir/LOCK: a second writer gets PAYI_LOCKED.  Recovery
 * (truncating a torn tail, refusing on corruption) happens here. */
payi_code log_open(payi_log **out, const char *dir, const log_options *opt, payi_err *err);
/* Stops the writer after the appends already submitted, then frees. */
void log_close(payi_log *log);

/* ---- appends ---- */

#define LOG_EXPECT_ANY (-1)        /* no check */
#define LOG_EXPECT_NO_STREAM (-2)  /* the stream must not exist */
#define LOG_EXPECT_EXISTS (-3)     /* the stream must have at least one event */

/* How an event's data is stored: JSON text, or the typed form of its
 * declared event type (spec/schema.h), which views read without parsing. */
typedef enum { LOG_ENC_JSON = 0, LOG_ENC_TYPED = 1 } log_encoding;

typedef struct log_event_in {
    const char *type;
    uint32_t type_len;
    const char *data;         /* JSON text, or typed data when encoding is LOG_ENC_TYPED */
    uint32_t data_len;
    uint8_t encoding;         /* log_encoding */
    const char *meta;         /* JSON text, or NULL */
    uint32_t meta_len;
    payi_uuid id;             /* used when has_id; otherwise generated */
    bool has_id;
    /* results */
    uint64_t position;
    uint64_t version;
    int64_t time_ns;          /* the append time recorded (not set for duplicates) */
    bool duplicate;           /* id was appended before: position/version are the original's */
    /* private: set by log_submit in the caller's thread, to spare the writer */
    uint32_t body_crc;
} log_event_in;

/* One atomic append: events to one stream, all or none. */
typedef struct log_append {
    const char *stream;
    uint32_t stream_len;
    int64_t expected;         /* a version >= 0 or LOG_EXPECT_* */
    log_event_in *events;
    uint32_t nevents;
    bool probe;               /* only look the ids up: PAYI_OK with the originals' positions when
                                 every event repeats an id, PAYI_NOT_FOUND when none does; appends nothing */
    /* With a numeric expected version: the stream's last event must also be
     * the one with this id, or the append is a conflict.  A decision made
     * on a state that included an event still in flight names it here, so
     * that if that event failed (its slot taken by another append) the
     * decision fails too instead of matching the version by coincidence. */
    bool check_prev;
    payi_uuid prev_id;
    /* result, valid once the append completed */
    payi_code status;
    int64_t actual_version;   /* on PAYI_CONFLICT: the stream's version (-1: no stream) */
    payi_err err;
} log_append;

/* A submission: appends taken in order.  With stop_at_error, an append after
 * a failed one is not attempted (status PAYI_CANCELLED).  Completion is
 * signalled once for the whole submission. */
typedef struct log_submission log_submission;

log_submission *log_submit(payi_log *log, log_append *appends, uint32_t n, bool stop_at_error);
/* Wait for a submission, then free it.  Returns the first non-OK status. */
payi_code log_wait(payi_log *log, log_submission *s);
/* Submit without a waiting thread: done(ctx) runs on the writer thread once
 * the submission completed (durable, or failed: see each append's status),
 * after which the log forgets the submission.  done must be quick and must
 * not call back into the log's append functions. */
typedef void (*log_done_fn)(void *ctx);
void log_submit_cb(payi_log *log, log_append *appends, uint32_t n, bool stop_at_error, log_done_fn done, void *ctx);
/* Wait until the head moves past seen, at most timeout_ms; returns the head
 * (writable logs; a read-only log returns its head at once). */
uint64_t log_wait_head(payi_log *log, uint64_t seen, int timeout_ms);
/* Submit and wait for a single append. */
payi_code log_append_one(payi_log *log, log_append *a);

/* The rules for a stream name (1..255 bytes of UTF-8, no control
 * characters), for callers that take names apart from appends. */
payi_code log_check_stream_name(const char *stream, uint32_t len, payi_err *err);

/* Check an append before submitting it: names, sizes.  The writer repeats
 * nothing of this; invalid appends never reach it. */
payi_code log_validate(const payi_log *log, const log_append *a, payi_err *err);

/* ---- reads ---- */

typedef struct log_event {
    uint64_t position;
    uint32_t partition;       /* 0 for the file log */
    uint64_t offset;          /* == position for the file log */
    const char *stream;
    uint32_t stream_len;
    uint64_t version;
    const char *type;
    uint32_t type_len;
    payi_uuid id;
    int64_t time_ns;
    uint8_t encoding;         /* log_encoding of data */
    const char *data;
    uint32_t data_len;
    const char *meta;
    uint32_t meta_len;
} log_event;

#define LOG_CURSOR_MAX_PARTS 64
typedef struct log_cursor {
    uint32_t nparts;                        /* 1 for the file log */
    uint64_t next[LOG_CURSOR_MAX_PARTS];    /* next offset to deliver, per partition */
} log_cursor;

void log_cursor_at(log_cursor *c, uint64_t position);   /* the file log's cursor */

/* Visible (acknowledged, in order, no gaps) events: [0, log_head). */
uint64_t log_head(payi_log *log);

/* Calls fn for each event of stream: from version `from` forward, or with
 * backwards from `from` down to 0 (from = UINT64_MAX: the last).  Stops after
 * limit events (0: no limit) or when fn returns non-zero.  A missing stream
 * reads as empty. */
typedef int (*log_event_fn)(void *ctx, const log_event *ev);
payi_code log_read_stream(payi_log *log, const char *stream, uint32_t stream_len, uint64_t from,
                          uint64_t limit, bool backwards, log_event_fn fn, void *ctx, payi_err *err);

/* Calls fn for each event from global position `from` forward, or with
 * backwards from `from` down to 0 (from >= head: the last); limit as above. */
payi_code log_read_all(payi_log *log, uint64_t from, uint64_t limit, bool backwards, log_event_fn fn, void *ctx,
                       payi_err *err);

/* The version of stream's last event, or -1 when it has none. */
int64_t log_stream_version(payi_log *log, const char *stream, uint32_t stream_len);

/* ---- subscriptions: history, then live, through one interface ---- */

typedef struct log_sub log_sub;

log_sub *log_sub_open(payi_log *log, const log_cursor *from);
/* Next event into *ev.  Waits up to timeout_ms (-1: forever, 0: not at all)
 * for one to arrive, woken by the writer (or, in a read-only log beside a
 * writer process, by inotify on the writer's head file).  Returns PAYI_OK,
 * PAYI_TIMEOUT when none arrived, or an error (corrupt record, I/O). */
payi_code log_sub_next(log_sub *s, log_event *ev, int timeout_ms, payi_err *err);
void log_sub_cursor(const log_sub *s, log_cursor *out);
void log_sub_close(log_sub *s);

/* ---- verification and state ---- */

typedef struct log_stats {
    uint64_t events;
    uint64_t segments;
    uint64_t bytes;
    uint64_t streams;
    uint64_t batches_written;
    uint64_t fsyncs;
    uint64_t recovered_truncated_bytes;   /* torn tail cut at open */
    uint64_t indexes_rebuilt;             /* sealed segments scanned at open: .idx missing or stale */
} log_stats;

void log_get_stats(payi_log *log, log_stats *out);
/* Non-OK once a write or fsync failed: the log then refuses appends. */
payi_code log_state(payi_log *log, payi_err *err);

/* Verify every record of the log in dir (read-only).  Returns PAYI_OK or
 * PAYI_CORRUPT with the file and offset in err; fills stats. */
payi_code log_check(const char *dir, log_stats *stats, payi_err *err);

#endif
