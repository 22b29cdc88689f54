/* Unit tests of the event log: records, indexes, appends, reads,
 * subscriptions, recovery and fault injection. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "log/index.h"
#include "log/log.h"
#include "log/logio.h"
#include "log/record.h"
#include "log/segment.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static payi_log *open_log(const char *dir, const log_options *o)
{
    payi_log *log = NULL;
    payi_err err;
    payi_code rc = log_open(&log, dir, o, &err);
    if (rc != PAYI_OK)
        test_fail(__FILE__, __LINE__, "log_open(%s): %s", dir, err.msg);
    return log;
}

static log_options opts_none(void)
{
    log_options o;
    log_options_default(&o);
    return o;
}

/* Append one event; returns the status and fills pos/ver. */
static payi_code put(payi_log *log, const char *stream, int64_t expected, const char *type, const char *data,
                     const payi_uuid *id, uint64_t *pos, uint64_t *ver, payi_err *err)
{
    log_event_in e = {.type = type, .type_len = (uint32_t)strlen(type), .data = data, .data_len = (uint32_t)strlen(data)};
    if (id) {
        e.id = *id;
        e.has_id = true;
    }
    log_append a = {.stream = stream, .stream_len = (uint32_t)strlen(stream), .expected = expected, .events = &e, .nevents = 1};
    payi_code rc = log_append_one(log, &a);
    if (pos)
        *pos = e.position;
    if (ver)
        *ver = e.version;
    if (err)
        *err = a.err;
    return rc;
}

static void put_n(payi_log *log, const char *stream, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(put(log, stream, LOG_EXPECT_ANY, "T", "{\"i\":1}", NULL, NULL, NULL, NULL), PAYI_OK);
}

typedef struct collected {
    uint64_t n;
    uint64_t positions[4096];
    uint64_t versions[4096];
} collected;

static int collect(void *ctx, const log_event *ev)
{
    collected *c = ctx;
    if (c->n < 4096) {
        c->positions[c->n] = ev->position;
        c->versions[c->n] = ev->version;
    }
    c->n++;
    return 0;
}

static uint64_t count_all(payi_log *log)
{
    log_sub *s = log_sub_open(log, NULL);
    log_event ev;
    payi_err err;
    uint64_t n = 0;
    while (log_sub_next(s, &ev, 0, &err) == PAYI_OK) {
        if (ev.position != n)
            test_fail(__FILE__, __LINE__, "position %llu at index %llu", (unsigned long long)ev.position,
                      (unsigned long long)n);
        n++;
    }
    log_sub_close(s);
    return n;
}

static char *seg0_path(const char *dir)
{
    static char p[4096];
    seg_path(p, sizeof p, dir, 0, "seg");
    return p;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Bytes of records in a one-segment log (the file itself may be longer: the
 * writer pads its last page with zeros for O_DIRECT). */
static off_t data_end(payi_log *log)
{
    log_stats st;
    log_get_stats(log, &st);
    return (off_t)st.bytes;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    CHECK(pread(fd, &c, 1, off) == 1);
    c ^= 0x10;
    CHECK(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

/* ---------------------------------------------------------------- records */

TEST(record_roundtrip)
{
    unsigned char out[256];
    rec_view r = {.position = 42, .time_ns = 1234567, .version = 7, .batch_index = 3, .flags = REC_F_CLIENT_ID,
                  .stream = "acct-1", .stream_len = 6, .type = "Deposited", .type_len = 9,
                  .meta = "{\"c\":1}", .meta_len = 7, .data = "{\"amount\":10}", .data_len = 13};
    uuid_generate(&r.id);
    size_t n = rec_encode(&r, rec_body_crc(&r), out);
    CHECK_EQ_U64(n, rec_size(6, 9, 7, 13));
    CHECK_EQ_U64(n % 8, 0);
    rec_view d;
    CHECK_EQ_INT(rec_decode(out, n, 1 << 20, &d), REC_OK);
    CHECK_EQ_U64(d.position, 42);
    CHECK_EQ_U64(d.version, 7);
    CHECK_EQ_U64(d.batch_index, 3);
    CHECK_EQ_U64(d.time_ns, 1234567);
    CHECK_EQ_U64(d.flags, REC_F_CLIENT_ID);
    CHECK_MEM(d.id.b, r.id.b, 16);
    CHECK(d.stream_len == 6 && !memcmp(d.stream, "acct-1", 6));
    CHECK(d.type_len == 9 && !memcmp(d.type, "Deposited", 9));
    CHECK(d.meta_len == 7 && !memcmp(d.meta, "{\"c\":1}", 7));
    CHECK(d.data_len == 13 && !memcmp(d.data, "{\"amount\":10}", 13));
}

TEST(record_decode_rejects_damage)
{
    unsigned char out[256];
    rec_view r = {.position = 1, .stream = "s", .stream_len = 1, .type = "t", .type_len = 1, .data = "{}", .data_len = 2};
    size_t n = rec_encode(&r, rec_body_crc(&r), out);
    rec_view d;
    CHECK_EQ_INT(rec_decode(out, REC_HEADER_SIZE - 1, 1 << 20, &d), REC_SHORT);
    CHECK_EQ_INT(rec_decode(out, REC_HEADER_SIZE + 1, 1 << 20, &d), REC_SHORT);
    CHECK_EQ_INT(rec_decode(out, n, 10, &d), REC_BAD_HEADER);   /* beyond the maximum */
    /* Every single bit flip in the record's bytes is caught. */
    uint32_t total = REC_HEADER_SIZE + 1 + 1 + 2;
    int missed = 0;
    for (uint32_t i = 0; i < total; i++)
        for (int bit = 0; bit < 8; bit++) {
            out[i] ^= (unsigned char)(1 << bit);
            if (rec_decode(out, n, 1 << 20, &d) == REC_OK)
                missed++;
            out[i] ^= (unsigned char)(1 << bit);
        }
    CHECK_EQ_INT(missed, 0);
    CHECK_EQ_INT(rec_decode(out, n, 1 << 20, &d), REC_OK);
}

/* ---------------------------------------------------------------- indexes */

TEST(index_streams_grow)
{
    stream_table t;
    streams_init(&t);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        uint32_t num;
        snprintf(name, sizeof name, "s-%d", i);
        stream_entry *s = streams_get(&t, name, (uint32_t)strlen(name), &num);
        CHECK_EQ_U64(num, i);
        stream_push(s, (uint64_t)i);
    }
    for (int i = 0; i < 5000; i += 7) {
        snprintf(name, sizeof name, "s-%d", i);
        stream_entry *s = streams_find(&t, name, (uint32_t)strlen(name));
        CHECK(s && s->count == 1 && s->positions[0] == (uint64_t)i);
    }
    CHECK(streams_find(&t, "nope", 4) == NULL);
    streams_release(&t);
}

TEST(index_ids_insert_find_remove)
{
    id_table t;
    ids_init(&t);
    enum { N = 20000 };
    payi_uuid *ids = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++) {
        uuid_generate(&ids[i]);
        ids_insert(&t, &ids[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i += 2)
        ids_remove(&t, &ids[i], (uint64_t)i);
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        uint64_t pos;
        bool found = ids_find(&t, &ids[i], NULL, NULL, &pos);
        if (found != (i % 2 == 1) || (found && pos != (uint64_t)i))
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_U64(t.n, N / 2);
    free(ids);
    ids_release(&t);
}

/* ---------------------------------------------------------------- appends and reads */

TEST(log_append_and_read_back)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    uint64_t pos, ver;
    CHECK_EQ_INT(put(log, "a", LOG_EXPECT_ANY, "T", "{\"x\":1}", NULL, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);
    CHECK_EQ_U64(ver, 0);
    CHECK_EQ_INT(put(log, "b", LOG_EXPECT_ANY, "T", "{}", NULL, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 1);
    CHECK_EQ_U64(ver, 0);
    CHECK_EQ_INT(put(log, "a", LOG_EXPECT_ANY, "U", "{}", NULL, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 2);
    CHECK_EQ_U64(ver, 1);
    collected c = {0};
    payi_err err;
    CHECK_EQ_INT(log_read_stream(log, "a", 1, 0, 0, false, collect, &c, &err), PAYI_OK);
    CHECK_EQ_U64(c.n, 2);
    CHECK_EQ_U64(c.positions[0], 0);
    CHECK_EQ_U64(c.positions[1], 2);
    c.n = 0;
    CHECK_EQ_INT(log_read_stream(log, "a", 1, UINT64_MAX, 0, true, collect, &c, &err), PAYI_OK);
    CHECK_EQ_U64(c.n, 2);
    CHECK_EQ_U64(c.versions[0], 1);
    c.n = 0;
    CHECK_EQ_INT(log_read_stream(log, "zz", 2, 0, 0, false, collect, &c, &err), PAYI_OK);
    CHECK_EQ_U64(c.n, 0);
    CHECK_EQ_U64(count_all(log), 3);
    CHECK_EQ_INT(log_stream_version(log, "a", 1), 1);
    CHECK_EQ_INT(log_stream_version(log, "zz", 2), -1);
    log_close(log);
    /* and after reopening */
    log = open_log(dir, &o);
    CHECK_EQ_U64(log_head(log), 3);
    CHECK_EQ_INT(log_stream_version(log, "a", 1), 1);
    CHECK_EQ_INT(put(log, "a", 1, "T", "{}", NULL, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(ver, 2);
    log_close(log);
}

TEST(log_expected_version)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    payi_err err;
    CHECK_EQ_INT(put(log, "s", LOG_EXPECT_EXISTS, "T", "{}", NULL, NULL, NULL, &err), PAYI_CONFLICT);
    CHECK(strstr(err.msg, "does not exist") != NULL);
    CHECK_EQ_INT(put(log, "s", 0, "T", "{}", NULL, NULL, NULL, &err), PAYI_CONFLICT);
    CHECK_EQ_INT(put(log, "s", LOG_EXPECT_NO_STREAM, "T", "{}", NULL, NULL, NULL, &err), PAYI_OK);
    CHECK_EQ_INT(put(log, "s", LOG_EXPECT_NO_STREAM, "T", "{}", NULL, NULL, NULL, &err), PAYI_CONFLICT);
    CHECK_EQ_INT(put(log, "s", LOG_EXPECT_EXISTS, "T", "{}", NULL, NULL, NULL, &err), PAYI_OK);
    CHECK_EQ_INT(put(log, "s", 1, "T", "{}", NULL, NULL, NULL, &err), PAYI_OK);
    /* a wrong version appends nothing and names the actual version */
    log_event_in e = {.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append a = {.stream = "s", .stream_len = 1, .expected = 5, .events = &e, .nevents = 1};
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_CONFLICT);
    CHECK_EQ_INT(a.actual_version, 2);
    CHECK(strstr(a.err.msg, "version 2") != NULL);
    CHECK_EQ_U64(log_head(log), 3);
    log_close(log);
}

/* A decision made after a given event holds only if that event is still
 * the stream's last: a version matched by coincidence is a conflict. */
TEST(log_expected_previous_event)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    log_event_in first = {.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append a = {.stream = "p", .stream_len = 1, .expected = LOG_EXPECT_NO_STREAM, .events = &first, .nevents = 1};
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_OK);
    payi_uuid after_first = first.id;
    /* another append takes version 1 */
    CHECK_EQ_INT(put(log, "p", 0, "T", "{}", NULL, NULL, NULL, NULL), PAYI_OK);
    /* decided after `first` expecting version 0: the version check alone catches it */
    log_event_in e = {.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append b = {.stream = "p", .stream_len = 1, .expected = 0, .events = &e, .nevents = 1, .check_prev = true,
                    .prev_id = after_first};
    CHECK_EQ_INT(log_append_one(log, &b), PAYI_CONFLICT);
    /* expecting version 1 (as if `first` had been followed by an event of ours that failed) but
     * naming `first` as the last event: the version matches, the event does not */
    log_append c = {.stream = "p", .stream_len = 1, .expected = 1, .events = &e, .nevents = 1, .check_prev = true,
                    .prev_id = after_first};
    CHECK_EQ_INT(log_append_one(log, &c), PAYI_CONFLICT);
    CHECK(strstr(c.err.msg, "last event is not the one") != NULL);
    CHECK_EQ_U64(log_head(log), 2);
    /* naming the real last event: appended */
    log_event_in last;
    uint64_t pos;
    CHECK_EQ_INT(put(log, "q", LOG_EXPECT_ANY, "T", "{}", NULL, &pos, NULL, NULL), PAYI_OK);
    log_event_in f = {.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append d = {.stream = "q", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = &f, .nevents = 1};
    CHECK_EQ_INT(log_append_one(log, &d), PAYI_OK);
    last = f;
    log_event_in g = {.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append h = {.stream = "q", .stream_len = 1, .expected = 1, .events = &g, .nevents = 1, .check_prev = true,
                    .prev_id = last.id};
    CHECK_EQ_INT(log_append_one(log, &h), PAYI_OK);
    CHECK_EQ_U64(log_head(log), 5);
    (void)pos;
    log_close(log);
}

TEST(log_atomic_multi_event_append)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    log_event_in ev[3];
    for (int i = 0; i < 3; i++)
        ev[i] = (log_event_in){.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
    log_append a = {.stream = "m", .stream_len = 1, .expected = LOG_EXPECT_NO_STREAM, .events = ev, .nevents = 3};
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_OK);
    CHECK_EQ_U64(ev[2].version, 2);
    CHECK_EQ_U64(ev[2].position, 2);
    a.expected = 0;   /* wrong: stream is at 2 */
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_CONFLICT);
    CHECK_EQ_U64(log_head(log), 3);
    log_close(log);
}

TEST(log_submission_stop_at_error)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    log_event_in ev[3];
    log_append ap[3];
    for (int i = 0; i < 3; i++) {
        ev[i] = (log_event_in){.type = "T", .type_len = 1, .data = "{}", .data_len = 2};
        ap[i] = (log_append){.stream = "q", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = &ev[i], .nevents = 1};
    }
    ap[1].expected = 7;
    CHECK_EQ_INT(log_wait(log, log_submit(log, ap, 3, true)), PAYI_CONFLICT);
    CHECK_EQ_INT(ap[0].status, PAYI_OK);
    CHECK_EQ_INT(ap[1].status, PAYI_CONFLICT);
    CHECK_EQ_INT(ap[2].status, PAYI_CANCELLED);
    CHECK_EQ_U64(log_head(log), 1);
    /* without stop_at_error, the third goes in */
    CHECK_EQ_INT(log_wait(log, log_submit(log, ap, 3, false)), PAYI_OK == ap[0].status ? PAYI_CONFLICT : PAYI_OK);
    CHECK_EQ_INT(ap[2].status, PAYI_OK);
    CHECK_EQ_U64(log_head(log), 3);
    log_close(log);
}

TEST(log_idempotent_ids_across_restart)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.segment_size = 4096;   /* so that ids also come from sealed segment indexes */
    payi_log *log = open_log(dir, &o);
    payi_uuid id1, id2;
    uuid_generate(&id1);
    uuid_generate(&id2);
    uint64_t pos, ver;
    CHECK_EQ_INT(put(log, "i", LOG_EXPECT_ANY, "T", "{}", &id1, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);
    put_n(log, "filler", 100);
    CHECK_EQ_INT(put(log, "i", LOG_EXPECT_ANY, "T", "{}", &id1, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);
    CHECK_EQ_U64(ver, 0);
    CHECK_EQ_INT(put(log, "i", LOG_EXPECT_ANY, "T", "{}", &id2, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 101);
    CHECK_EQ_U64(ver, 1);
    log_close(log);
    log = open_log(dir, &o);
    /* a retry with a now-stale expected version still answers the original */
    CHECK_EQ_INT(put(log, "i", 0, "T", "{}", &id1, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);
    CHECK_EQ_INT(put(log, "i", LOG_EXPECT_ANY, "T", "{}", &id2, &pos, &ver, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 101);
    CHECK_EQ_U64(log_head(log), 102);
    /* a mix of repeated and new ids in one atomic append is refused */
    payi_uuid id3;
    uuid_generate(&id3);
    log_event_in ev[2] = {{.type = "T", .type_len = 1, .data = "{}", .data_len = 2, .id = id1, .has_id = true},
                          {.type = "T", .type_len = 1, .data = "{}", .data_len = 2, .id = id3, .has_id = true}};
    log_append a = {.stream = "i", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = ev, .nevents = 2};
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_VALIDATION);
    CHECK_EQ_U64(log_head(log), 102);
    log_close(log);
    /* the sealed segments' .idx files were written, and reopening without them rebuilds */
    char idx[4096];
    seg_path(idx, sizeof idx, dir, 0, "idx");
    CHECK(file_size(idx) > 0);
    CHECK(unlink(idx) == 0);
    log = open_log(dir, &o);
    log_stats st;
    log_get_stats(log, &st);
    CHECK_EQ_U64(st.indexes_rebuilt, 1);
    CHECK_EQ_INT(put(log, "i", LOG_EXPECT_ANY, "T", "{}", &id1, &pos, NULL, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);
    CHECK(file_size(idx) > 0);
    log_close(log);
}

TEST(log_duplicate_within_one_batch)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    payi_uuid id;
    uuid_generate(&id);
    log_event_in ev[2] = {{.type = "T", .type_len = 1, .data = "{}", .data_len = 2, .id = id, .has_id = true},
                          {.type = "T", .type_len = 1, .data = "{}", .data_len = 2, .id = id, .has_id = true}};
    log_append ap[2] = {{.stream = "d", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = &ev[0], .nevents = 1},
                        {.stream = "d", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = &ev[1], .nevents = 1}};
    CHECK_EQ_INT(log_wait(log, log_submit(log, ap, 2, false)), PAYI_OK);
    CHECK(!ev[0].duplicate);
    CHECK(ev[1].duplicate);
    CHECK_EQ_U64(ev[1].position, ev[0].position);
    CHECK_EQ_U64(log_head(log), 1);
    log_close(log);
}

TEST(log_segment_roll_and_reopen)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.segment_size = 4096;
    payi_log *log = open_log(dir, &o);
    for (int i = 0; i < 300; i++) {
        char s[16];
        snprintf(s, sizeof s, "r%d", i % 7);
        CHECK_EQ_INT(put(log, s, LOG_EXPECT_ANY, "T", "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", NULL, NULL, NULL, NULL), PAYI_OK);
    }
    log_stats st;
    log_get_stats(log, &st);
    CHECK(st.segments >= 5);
    log_close(log);
    log = open_log(dir, &o);
    log_get_stats(log, &st);
    CHECK_EQ_U64(st.indexes_rebuilt, 0);   /* every sealed segment trimmed and indexed at roll */
    CHECK_EQ_U64(count_all(log), 300);
    collected c = {0};
    payi_err err;
    CHECK_EQ_INT(log_read_stream(log, "r3", 2, 0, 0, false, collect, &c, &err), PAYI_OK);
    CHECK_EQ_U64(c.n, 43);
    for (uint64_t i = 0; i < c.n; i++) {
        CHECK_EQ_U64(c.versions[i], i);
        CHECK_EQ_U64(c.positions[i], 3 + 7 * i);
    }
    log_close(log);
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_OK);
    CHECK_EQ_U64(st.events, 300);
}

TEST(log_second_writer_is_locked_out)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o), *second = NULL;
    payi_err err;
    CHECK_EQ_INT(log_open(&second, dir, &o, &err), PAYI_LOCKED);
    CHECK(strstr(err.msg, dir) != NULL);
    CHECK(second == NULL);
    log_close(log);
    CHECK_EQ_INT(log_open(&second, dir, &o, &err), PAYI_OK);
    log_close(second);
}

TEST(log_validate_refuses_bad_appends)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.max_event_size = 100;
    payi_log *log = open_log(dir, &o);
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    log_event_in e = {.type = "T", .type_len = 1, .data = big, .data_len = (uint32_t)strlen(big)};
    log_append a = {.stream = "s", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = &e, .nevents = 1};
    payi_err err;
    CHECK_EQ_INT(log_validate(log, &a, &err), PAYI_TOO_LARGE);
    e.data = "{}";
    e.data_len = 2;
    a.stream = "bad\nname";
    a.stream_len = 8;
    CHECK_EQ_INT(log_validate(log, &a, &err), PAYI_VALIDATION);
    CHECK_STR(err.field, "stream");
    a.stream = "\xff\xfe";
    a.stream_len = 2;
    CHECK_EQ_INT(log_validate(log, &a, &err), PAYI_VALIDATION);
    a.stream = "";
    a.stream_len = 0;
    CHECK_EQ_INT(log_validate(log, &a, &err), PAYI_VALIDATION);
    a.stream = "ok";
    a.stream_len = 2;
    e.type_len = 0;
    CHECK_EQ_INT(log_validate(log, &a, &err), PAYI_VALIDATION);
    CHECK_STR(err.field, "type");
    CHECK_EQ_U64(log_head(log), 0);
    log_close(log);
}

/* ---------------------------------------------------------------- subscriptions */

typedef struct appender_arg {
    payi_log *log;
    int n;
} appender_arg;

static void *late_appender(void *p)
{
    appender_arg *a = p;
    usleep(50000);
    for (int i = 0; i < a->n; i++)
        put(a->log, "live", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, NULL);
    return NULL;
}

TEST(log_subscription_history_then_live)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "hist", 10);
    log_cursor cur;
    log_cursor_at(&cur, 5);
    log_sub *s = log_sub_open(log, &cur);
    log_event ev;
    payi_err err;
    for (uint64_t i = 5; i < 10; i++) {
        CHECK_EQ_INT(log_sub_next(s, &ev, 0, &err), PAYI_OK);
        CHECK_EQ_U64(ev.position, i);
    }
    CHECK_EQ_INT(log_sub_next(s, &ev, 0, &err), PAYI_TIMEOUT);
    CHECK_EQ_INT(log_sub_next(s, &ev, 20, &err), PAYI_TIMEOUT);
    pthread_t th;
    appender_arg arg = {log, 20};
    pthread_create(&th, NULL, late_appender, &arg);
    for (uint64_t i = 10; i < 30; i++) {   /* woken by the writer, no polling */
        CHECK_EQ_INT(log_sub_next(s, &ev, 5000, &err), PAYI_OK);
        CHECK_EQ_U64(ev.position, i);
        CHECK(ev.stream_len == 4 && !memcmp(ev.stream, "live", 4));
    }
    pthread_join(th, NULL);
    log_sub_cursor(s, &cur);
    CHECK_EQ_U64(cur.next[0], 30);
    log_sub_close(s);
    log_close(log);
}

TEST(log_read_only_sees_only_acknowledged)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "x", 5);
    log_options ro = opts_none();
    ro.read_only = true;
    payi_log *reader = open_log(dir, &ro);
    CHECK_EQ_U64(log_head(reader), 5);
    put_n(log, "x", 3);
    /* the reader follows the writer through HEAD */
    log_cursor cur;
    log_cursor_at(&cur, 5);
    log_sub *s = log_sub_open(reader, &cur);
    log_event ev;
    payi_err err;
    for (uint64_t i = 5; i < 8; i++) {
        CHECK_EQ_INT(log_sub_next(s, &ev, 2000, &err), PAYI_OK);
        CHECK_EQ_U64(ev.position, i);
    }
    log_sub_close(s);
    CHECK_EQ_INT(put(reader, "x", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, NULL), PAYI_READ_ONLY);
    log_close(reader);
    log_close(log);
}

/* ---------------------------------------------------------------- recovery */

TEST(recovery_truncates_torn_tail)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "t", 10);
    off_t size = data_end(log);
    log_close(log);
    const char *seg = seg0_path(dir);
    CHECK(file_size(seg) >= size);
    CHECK(truncate(seg, size - 5) == 0);   /* the last record cut */
    log = open_log(dir, &o);
    CHECK_EQ_U64(log_head(log), 9);
    log_stats st;
    log_get_stats(log, &st);
    CHECK(st.recovered_truncated_bytes > 0);
    put_n(log, "t", 1);
    CHECK_EQ_U64(count_all(log), 10);
    log_close(log);
    payi_err err;
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_OK);
    CHECK_EQ_U64(st.events, 10);
}

TEST(recovery_truncates_garbage_and_flipped_tail)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "g", 10);
    off_t size = data_end(log);
    log_close(log);
    const char *seg = seg0_path(dir);
    int fd = open(seg, O_WRONLY | O_APPEND);
    CHECK(write(fd, "garbage-garbage-garbage", 23) == 23);
    close(fd);
    log = open_log(dir, &o);
    CHECK_EQ_U64(log_head(log), 10);
    log_close(log);
    CHECK_EQ_U64(file_size(seg), size);
    flip_byte(seg, size - 20);   /* inside the last record */
    log = open_log(dir, &o);
    CHECK_EQ_U64(log_head(log), 9);
    log_close(log);
}

TEST(recovery_refuses_corruption_before_the_tail)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "c", 10);   /* ten batches: each append waited for */
    log_close(log);
    const char *seg = seg0_path(dir);
    off_t target = SEG_HEADER_SIZE + 3 * 80 + 70;   /* inside the fourth record (80 bytes each) */
    flip_byte(seg, target);
    payi_log *again = NULL;
    payi_err err;
    CHECK_EQ_INT(log_open(&again, dir, &o, &err), PAYI_CORRUPT);
    CHECK(strstr(err.msg, seg) != NULL);
    CHECK(strstr(err.msg, "offset 272") != NULL);
    log_stats st;
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_CORRUPT);
    CHECK(strstr(err.msg, "offset 272") != NULL);
    CHECK_EQ_U64(st.events, 3);
}

TEST(recovery_drops_incomplete_batch_whole)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "b", 2);
    log_event_in ev[4];
    for (int i = 0; i < 4; i++)
        ev[i] = (log_event_in){.type = "T", .type_len = 1, .data = "{\"i\":1}", .data_len = 7};
    log_append a = {.stream = "b", .stream_len = 1, .expected = LOG_EXPECT_ANY, .events = ev, .nevents = 4};
    CHECK_EQ_INT(log_append_one(log, &a), PAYI_OK);
    log_close(log);
    /* cut the file inside the third event of the atomic append: the first two
     * of it are whole but must not survive on their own */
    const char *seg = seg0_path(dir);
    CHECK(truncate(seg, SEG_HEADER_SIZE + 4 * 80 + 10) == 0);
    log = open_log(dir, &o);
    CHECK_EQ_U64(log_head(log), 2);
    log_close(log);
}

TEST(recovery_refuses_another_format_and_touches_nothing)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "v", 5);
    log_close(log);
    const char *seg = seg0_path(dir);
    int fd = open(seg, O_RDWR);
    uint32_t old_format = 1;
    CHECK(pwrite(fd, &old_format, 4, 8) == 4);
    close(fd);
    off_t size = file_size(seg);
    payi_err err;
    CHECK_EQ_INT(log_open(&log, dir, &o, &err), PAYI_CORRUPT);
    CHECK(strstr(err.msg, "format 1") != NULL);
    CHECK_EQ_U64(file_size(seg), size);   /* not taken for a torn tail */
}

TEST(recovery_damaged_client_ids_in_idx_are_taken_from_the_segment)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.segment_size = 4096;
    payi_log *log = open_log(dir, &o);
    payi_uuid first;
    uuid_generate(&first);
    CHECK_EQ_INT(put(log, "k", LOG_EXPECT_ANY, "T", "{}", &first, NULL, NULL, NULL), PAYI_OK);
    for (int i = 0; i < 100; i++) {
        payi_uuid id;
        uuid_generate(&id);
        CHECK_EQ_INT(put(log, "k", LOG_EXPECT_ANY, "T", "{}", &id, NULL, NULL, NULL), PAYI_OK);
    }
    log_close(log);
    char idx[4096];
    seg_path(idx, sizeof idx, dir, 0, "idx");
    off_t size = file_size(idx);
    flip_byte(idx, size - 10);   /* inside the client ids, under their own checksum */
    log = open_log(dir, &o);
    log_stats st;
    log_get_stats(log, &st);
    CHECK_EQ_U64(st.indexes_rebuilt, 0);   /* the main part is sound: no rescan at open */
    uint64_t pos;
    CHECK_EQ_INT(put(log, "k", LOG_EXPECT_ANY, "T", "{}", &first, &pos, NULL, NULL), PAYI_OK);
    CHECK_EQ_U64(pos, 0);                  /* still found: the loader read the segment */
    CHECK_EQ_U64(log_head(log), 101);
    log_close(log);
}

TEST(recovery_reindexes_when_idx_is_stale_or_damaged)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.segment_size = 4096;
    payi_log *log = open_log(dir, &o);
    put_n(log, "z", 200);
    log_close(log);
    char idx[4096];
    seg_path(idx, sizeof idx, dir, 0, "idx");
    flip_byte(idx, 60);
    log = open_log(dir, &o);
    CHECK_EQ_U64(count_all(log), 200);
    CHECK_EQ_INT(log_stream_version(log, "z", 1), 199);
    log_close(log);
}

/* ---------------------------------------------------------------- fault injection */

static struct {
    int short_writes;     /* next N writes write half */
    int eintr;            /* next N writes fail with EINTR */
    int write_errno;      /* fail every write with this errno (0: none) */
    int fsync_errno;      /* fail every fdatasync with this errno */
} fault;

static ssize_t fault_write(int fd, const void *b, size_t n, off_t off)
{
    if (fault.eintr > 0) {
        fault.eintr--;
        errno = EINTR;
        return -1;
    }
    if (fault.write_errno) {
        if (n > 1 && fault.write_errno == ENOSPC) {   /* a disk filling up mid-write: some bytes land */
            size_t part = n % 4096 == 0 && off % 4096 == 0 ? n / 2 / 4096 * 4096 : n / 2;
            ssize_t w = part ? pwrite(fd, b, part, off) : 0;
            (void)w;
        }
        errno = fault.write_errno;
        return -1;
    }
    if (fault.short_writes > 0 && n > 1) {
        /* Half, but whole pages when the writer uses O_DIRECT (the kernel's
         * short writes there are page multiples too). */
        size_t half = n / 2;
        if (n % 4096 == 0 && off % 4096 == 0)
            half = half / 4096 * 4096;
        if (half) {
            fault.short_writes--;
            return pwrite(fd, b, half, off);
        }
    }
    return pwrite(fd, b, n, off);
}

static int fault_fdatasync(int fd)
{
    if (fault.fsync_errno) {
        errno = fault.fsync_errno;
        return -1;
    }
    return fdatasync(fd);
}

static const logio_ops fault_ops = {fault_write, fault_fdatasync, fsync, ftruncate};

static void faults_on(void)
{
    memset(&fault, 0, sizeof fault);
    logio = &fault_ops;
}

static void faults_off(void)
{
    memset(&fault, 0, sizeof fault);
    logio = &logio_real;
}

TEST(fault_short_writes_and_eintr_are_retried)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    faults_on();
    fault.short_writes = 5;
    fault.eintr = 5;
    put_n(log, "f", 10);
    faults_off();
    CHECK_EQ_U64(count_all(log), 10);
    log_close(log);
    log_stats st;
    payi_err err;
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_OK);
    CHECK_EQ_U64(st.events, 10);
}

TEST(fault_enospc_answers_insufficient_storage_and_damages_nothing)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "n", 3);
    off_t before = data_end(log);
    static unsigned char saved[4096], now[4096];
    int fd = open(seg0_path(dir), O_RDONLY);
    CHECK(pread(fd, saved, (size_t)before, 0) == before);
    faults_on();
    fault.write_errno = ENOSPC;
    payi_err err;
    CHECK_EQ_INT(put(log, "n", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, &err), PAYI_NOSPACE);
    CHECK_STR(payi_code_word(PAYI_NOSPACE), "insufficient_storage");
    /* the partial write was taken back: the file is its records, unchanged */
    CHECK_EQ_U64(file_size(seg0_path(dir)), before);
    CHECK(pread(fd, now, sizeof now, 0) == before);
    CHECK_MEM(now, saved, (size_t)before);
    close(fd);
    CHECK_EQ_U64(log_head(log), 3);
    faults_off();
    /* space is back: the log is still writable and versions continue without a gap */
    uint64_t ver;
    CHECK_EQ_INT(put(log, "n", 2, "T", "{}", NULL, NULL, &ver, &err), PAYI_OK);
    CHECK_EQ_U64(ver, 3);
    log_close(log);
    log_stats st;
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_OK);
    CHECK_EQ_U64(st.events, 4);
}

TEST(fault_eio_on_write_makes_the_log_read_only)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "e", 2);
    faults_on();
    fault.write_errno = EIO;
    payi_err err;
    CHECK_EQ_INT(put(log, "e", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, &err), PAYI_IO);
    faults_off();
    /* sticky: even with the disk healthy again, no more appends */
    CHECK_EQ_INT(put(log, "e", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, &err), PAYI_READ_ONLY);
    CHECK(strstr(err.msg, "write") != NULL);
    CHECK_EQ_INT(log_state(log, &err), PAYI_READ_ONLY);
    CHECK_EQ_U64(log_head(log), 2);
    CHECK_EQ_U64(count_all(log), 2);   /* reads still work */
    log_close(log);
}

TEST(fault_fsync_failure_is_never_retried)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    payi_log *log = open_log(dir, &o);
    put_n(log, "y", 2);
    faults_on();
    fault.fsync_errno = EIO;
    payi_err err;
    CHECK_EQ_INT(put(log, "y", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, &err), PAYI_IO);
    CHECK(strstr(err.msg, "fdatasync") != NULL);
    faults_off();
    CHECK_EQ_INT(put(log, "y", LOG_EXPECT_ANY, "T", "{}", NULL, NULL, NULL, &err), PAYI_READ_ONLY);
    CHECK_EQ_U64(log_head(log), 2);   /* the unsynced event was never acknowledged nor visible */
    log_close(log);
}

TEST(fault_enospc_at_segment_roll_keeps_the_log_writable)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.segment_size = 4096;
    payi_log *log = open_log(dir, &o);
    put_n(log, "w", 50);   /* 50 x 80 bytes + header: the next append rolls */
    log_stats st;
    log_get_stats(log, &st);
    CHECK_EQ_U64(st.segments, 1);
    faults_on();
    fault.write_errno = ENOSPC;
    payi_err err;
    CHECK_EQ_INT(put(log, "w", LOG_EXPECT_ANY, "T", "{\"i\":1}", NULL, NULL, NULL, &err), PAYI_NOSPACE);
    faults_off();
    put_n(log, "w", 15);
    CHECK_EQ_U64(count_all(log), 65);
    log_close(log);
    log = open_log(dir, &o);
    CHECK_EQ_U64(count_all(log), 65);
    log_close(log);
    CHECK_EQ_INT(log_check(dir, &st, &err), PAYI_OK);
    CHECK_EQ_U64(st.events, 65);
    CHECK(st.segments >= 2);
}

TEST(durability_modes_append_and_recover)
{
    log_durability modes[] = {LOG_DURABLE_FSYNC, LOG_DURABLE_INTERVAL, LOG_DURABLE_NONE};   /* interval: see below */
    for (int m = 0; m < 3; m++) {
        const char *dir = test_tmpdir();
        log_options o = opts_none();
        o.durability = modes[m];
        o.interval_ms = 5;
        payi_log *log = open_log(dir, &o);
        put_n(log, "d", 20);
        usleep(20000);
        log_stats st;
        log_get_stats(log, &st);
        if (modes[m] == LOG_DURABLE_FSYNC)
            CHECK_EQ_U64(st.fsyncs, st.batches_written);
        if (modes[m] == LOG_DURABLE_NONE)
            CHECK_EQ_U64(st.fsyncs, 0);
        log_close(log);
        log = open_log(dir, &o);
        CHECK_EQ_U64(count_all(log), 20);
        log_close(log);
    }
}

TEST(durability_interval_acks_before_syncing_and_syncs_within_the_window)
{
    const char *dir = test_tmpdir();
    log_options o = opts_none();
    o.durability = LOG_DURABLE_INTERVAL;
    o.interval_ms = 1000;
    payi_log *log = open_log(dir, &o);
    put_n(log, "i", 20);   /* each acknowledged once written: well within the first second */
    log_stats st;
    log_get_stats(log, &st);
    CHECK_EQ_U64(st.batches_written, 20);
    CHECK_EQ_U64(st.fsyncs, 0);
    /* with no further appends, the writer still syncs when the window closes */
    for (int i = 0; i < 300 && st.fsyncs == 0; i++) {
        usleep(10000);
        log_get_stats(log, &st);
    }
    CHECK_EQ_U64(st.fsyncs, 1);
    log_close(log);
}
