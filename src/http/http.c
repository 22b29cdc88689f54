/* http.c — the HTTP face of the event store, on libmicrohttpd (MHD).
 *
 * Routes (see http.h for the answers):
 *   POST /commands/{Name}    a command's fields (JSON); application/x-ndjson: one command per line
 *   POST /streams/{stream}   body: one event object or an array (one atomic append);
 *                            Content-Type application/x-ndjson: one append per line,
 *                            all lines submitted together, answered line by line.
 *   GET  /streams/{stream}   ?from=VERSION&limit=N&backwards=BOOL
 *   GET  /all                ?from=POSITION&limit=N&backwards=BOOL
 *   GET  /events             ?from=POSITION, or the Last-Event-ID header: SSE
 *   GET  /health, GET /metrics
 *   GET  /, GET /assets/...  the dashboard's built files (static.c; HEAD too)
 *   anything else: 404 not_found; a known path with another method: 405.
 *
 * Threading: MHD runs a small pool of threads (one per CPU by default), each
 * polling many connections, so no handler may block.  poll(), not epoll:
 * with epoll, libmicrohttpd 0.9.75 lost track of keep-alive connections
 * whose next request arrived while they were suspended (edge-triggered:
 * the edge came while the connection was out of the set), and under CPU
 * load all 128 connections of `payi bench views-latency` stopped being
 * answered in 2 of 3 runs; with poll none did in 4, at the same
 * requests/s (wrk, POST /commands/Count, 64 connections: 28-33k either way).
 * Whatever waits is handed on and the connection suspended ("suspension"
 * below): an append or a command waits for its group commit through a
 * completion callback on the log's writer thread; an event stream with
 * nothing to send parks until the waker thread sees the head move (or
 * SSE_SLICE_MS passes: keep-alives, departed clients, shutdown); an NDJSON
 * batch of commands runs on a thread of its own.  A slow client costs a
 * connection slot, never a thread.  Reads (GET /streams, /all) run inline:
 * they read from the page cache and answer at once.  State shared between
 * threads: the log and the command engine (thread-safe), the parked list
 * (park_mu) and the metrics counters (relaxed atomics).
 *
 * Request flow: MHD calls on_request first with the headers (we allocate an
 * http_req, route it, and answer GETs and early errors at once), then once per
 * piece of body (copied into req->body, refused past max_body), then once with
 * no data: the work starts then.  If it suspended the connection, the next
 * call is its resumption (r->parked), which sends the answer.  on_completed
 * frees the http_req and records the request's status and duration.
 *
 * Paths are decoded here, not by MHD: the unescape callback keeps the text as
 * sent, so "%2F" in a stream name is a byte of the name and never a path
 * separator; query values are percent-decoded here too.
 *
 * Ownership: the server borrows the log.  An http_req is owned by MHD's
 * per-request pointer until on_completed; an event stream (sse) is owned by
 * its MHD response and freed by sse_free (closing its subscription) when the
 * response is destroyed: the client went away, the stream failed, or the
 * server stopped.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "event/evjson.h"
#include "http/static.h"
#include "view/view.h"

#define SSE_SLICE_MS 250          /* how often an idle event stream looks at its client and at shutdown */
#define SSE_BLOCK (64u << 10)     /* most bytes handed to MHD per content-reader call */
#define READ_MAX_LIMIT 100000u    /* events per GET /streams or /all answer */
#define READ_DEFAULT_LIMIT 1000u
#define LISTEN_BACKLOG 1024

/* ---------------------------------------------------------------- routes and metrics */

typedef enum {
    R_COMMAND,     /* POST /commands/{Name} */
    R_APPEND,      /* POST /streams/{stream} */
    R_STREAM,      /* GET /streams/{stream} */
    R_ALL,         /* GET /all */
    R_EVENTS,      /* GET /events */
    R_HEALTH,      /* GET /health */
    R_METRICS,     /* GET /metrics */
    R_VIEW,        /* GET /views/{name} */
    R_VIEW_CHANGES,/* GET /views/{name}/changes */
    R_SQL,         /* POST /sql */
    R_STATIC,      /* GET / and /assets/...: the dashboard (static.c) */
    R_OTHER,       /* 404 and 405 */
    R__N
} route;

static const char *const route_label[R__N] = {
    "POST /commands/{name}", "POST /streams/{stream}", "GET /streams/{stream}", "GET /all", "GET /events", "GET /health", "GET /metrics",
    "GET /views/{name}", "GET /views/{name}/changes", "POST /sql", "GET /assets", "other"};

#define HIST_N 14
static const double hist_le[HIST_N] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};

typedef struct route_stats {
    _Atomic uint64_t by_status[600];
    _Atomic uint64_t bucket[HIST_N + 1];   /* non-cumulative; the last is +Inf */
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t count;
} route_stats;

typedef struct sse sse;

struct http_server {
    payi_log *log;
    const registry *reg;
    cmd_engine *cmd;
    view_engine *views;         /* NULL without views: /views answers 404 */
    gen_engine *gens;           /* NULL without generators */
    pthread_mutex_t park_mu;    /* event streams waiting for events */
    sse *parked;
    pthread_t waker;            /* resumes them when the head moves, and every SSE_SLICE_MS */
    bool waker_started;
    _Atomic int64_t suspended;  /* connections we suspended and MHD has not handed back yet */
    http_options opt;
    struct MHD_Daemon *mhd;
    int fd;                     /* the listening socket: ours; MHD only uses it */
    char url[INET6_ADDRSTRLEN + 32];
    _Atomic bool stopping;
    _Atomic int64_t sse_clients;
    route_stats stats[R__N];
};

typedef struct nd_line nd_line;

typedef struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    bool parked;                /* suspended by us: the next handler call is the resumption */
    /* work that waits for the log, kept across the suspension */
    evjson_batch *batch;
    nd_line *lines;
    size_t nlines;
    cmd_call *call;
    pthread_t worker;           /* NDJSON command batches run on a thread of their own */
    bool has_worker;
    int ready_status;           /* an answer made while suspended, sent on resumption */
    const char *ready_ctype;
    buf ready;
    route route;
    int64_t start_ns;
    int status;                 /* of the queued answer; 0 when none was */
    bool ndjson;
    bool too_big;
    buf stream;                 /* the decoded {stream} or {Name} of the path */
    int early_status;           /* an error found with the headers, answered after the body */
    buf early;
    buf body;
    view_param *qp;             /* GET /views: the decoded query parameters */
    size_t nqp;
    int view;
} http_req;

static void count_request(http_server *s, const http_req *r)
{
    route_stats *st = &s->stats[r->route];
    uint64_t ns = (uint64_t)(time_mono_ns() - r->start_ns);
    if (r->status > 0 && r->status < 600)
        atomic_fetch_add_explicit(&st->by_status[r->status], 1, memory_order_relaxed);
    double secs = (double)ns / 1e9;
    unsigned b = 0;
    while (b < HIST_N && secs > hist_le[b])
        b++;
    atomic_fetch_add_explicit(&st->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->count, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- answers */

/* A JSON string of text that should be UTF-8 but may have been cut mid-character
 * by a fixed-size message buffer: invalid bytes become U+FFFD. */
static void put_text(buf *out, const char *s, size_t len)
{
    buf clean = BUF_INIT;
    size_t bad;
    while (!json_utf8_valid(s, len, &bad)) {
        buf_put(&clean, s, bad);
        buf_puts(&clean, "\xef\xbf\xbd");
        s += bad + 1;
        len -= bad + 1;
    }
    buf_put(&clean, s, len);
    json_put_string(out, clean.data ? clean.data : "", clean.len);
    buf_release(&clean);
}

/* {"error":{"code","message","field"?<extra>}}; extra is more members, each led by a comma. */
static void write_error_word(buf *out, const char *word, const payi_err *e, const char *extra)
{
    buf_puts(out, "{\"error\":{\"code\":\"");
    buf_puts(out, word);
    buf_puts(out, "\",\"message\":");
    put_text(out, e->msg, strlen(e->msg));
    if (e->field[0]) {
        buf_puts(out, ",\"field\":");
        put_text(out, e->field, strlen(e->field));
    }
    buf_puts(out, extra ? extra : "");
    buf_puts(out, "}}");
}

static void write_error(buf *out, const payi_err *e, const char *extra)
{
    write_error_word(out, payi_code_word(e->code), e, extra);
}

static enum MHD_Result send_body(http_req *r, struct MHD_Connection *c, int status, const char *ctype,
                                 const buf *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body->len, body->data ? body->data : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    enum MHD_Result rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (rc == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->route == R_APPEND ? "GET, POST" : r->route == R_COMMAND || r->route == R_SQL ? "POST" : "GET");
    if (rc == MHD_YES)
        rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES)
        r->status = status;
    return rc;
}

static enum MHD_Result send_json(http_req *r, struct MHD_Connection *c, int status, const buf *body)
{
    return send_body(r, c, status, "application/json", body);
}

static enum MHD_Result send_error_extra(http_req *r, struct MHD_Connection *c, const payi_err *e, const char *extra)
{
    buf out = BUF_INIT;
    write_error(&out, e, extra);
    enum MHD_Result rc = send_json(r, c, payi_code_http(e->code), &out);
    buf_release(&out);
    return rc;
}

static enum MHD_Result send_error(http_req *r, struct MHD_Connection *c, const payi_err *e)
{
    return send_error_extra(r, c, e, NULL);
}

/* ---------------------------------------------------------------- request input */

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out; false on a malformed escape. */
static bool pct_decode(const char *s, size_t n, buf *out)
{
    buf_reset(out);
    buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            buf_putc(out, s[i]);
            continue;
        }
        int hi = i + 1 < n ? hex_digit(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        buf_putc(out, (char)(hi * 16 + lo));
        i += 2;
    }
    return true;
}

/* A query parameter, percent-decoded into out.  Returns 0 when absent, 1 when
 * present (a bare "?name" gives an empty value), -1 when malformed. */
static int query_param(struct MHD_Connection *c, const char *name, buf *out)
{
    const char *v = NULL;
    size_t vlen = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &vlen) != MHD_YES)
        return 0;
    return pct_decode(v ? v : "", v ? vlen : 0, out) ? 1 : -1;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (!*s || !strcmp(s, "true") || !strcmp(s, "1")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "false") || !strcmp(s, "0")) {
        *out = false;
        return true;
    }
    return false;
}

typedef struct read_params {
    uint64_t from;
    bool from_set;
    uint64_t limit;
    bool backwards;
} read_params;

/* from, limit and backwards of a read; PAYI_VALIDATION naming the parameter. */
static payi_code parse_read_params(struct MHD_Connection *c, read_params *p, payi_err *err)
{
    buf v = BUF_INIT;
    payi_code rc = PAYI_OK;
    p->from = 0;
    p->from_set = false;
    p->limit = READ_DEFAULT_LIMIT;
    p->backwards = false;
    int have = query_param(c, "from", &v);
    if (have != 0 && (have < 0 || !parse_u64(v.data, &p->from)))
        rc = payi_err_set(err, PAYI_VALIDATION, "from", "from must be a whole number >= 0");
    p->from_set = have > 0;
    have = rc == PAYI_OK ? query_param(c, "limit", &v) : 0;
    if (have != 0 && (have < 0 || !parse_u64(v.data, &p->limit) || p->limit == 0 || p->limit > READ_MAX_LIMIT))
        rc = payi_err_set(err, PAYI_VALIDATION, "limit", "limit must be a whole number from 1 to %u",
                          READ_MAX_LIMIT);
    have = rc == PAYI_OK ? query_param(c, "backwards", &v) : 0;
    if (have != 0 && (have < 0 || !parse_bool(v.data, &p->backwards)))
        rc = payi_err_set(err, PAYI_VALIDATION, "backwards", "backwards must be true or false");
    buf_release(&v);
    return rc;
}

static payi_code check_stream_name(const buf *name, payi_err *err)
{
    if (name->len > UINT32_MAX / 2)
        return payi_err_set(err, PAYI_VALIDATION, "stream", "stream is too long");
    return log_check_stream_name(name->data ? name->data : "", (uint32_t)name->len, err);
}

/* ---------------------------------------------------------------- suspension
 *
 * A request that waits for the log does not hold a thread: the handler
 * suspends its connection (park) before handing the work on, and the
 * completion, on the writer's thread, resumes it (wake).  MHD then calls
 * the handler again, which finds r->parked and finishes the answer.  park
 * always comes first, so a completion can never resume a connection that
 * is not suspended yet. */

static void park(http_req *r)
{
    r->parked = true;
    atomic_fetch_add(&r->srv->suspended, 1);
    MHD_suspend_connection(r->conn);
}

static void wake(void *ctx)
{
    http_req *r = ctx;
    MHD_resume_connection(r->conn);
}

/* Keep an answer to send on the resumption. */
static void ready_answer(http_req *r, int status, const char *ctype, const buf *body)
{
    buf_reset(&r->ready);
    buf_put(&r->ready, body->data ? body->data : "", body->len);
    r->ready_status = status;
    r->ready_ctype = ctype;
}

static void ready_error(http_req *r, const payi_err *e)
{
    buf out = BUF_INIT;
    write_error(&out, e, NULL);
    ready_answer(r, payi_code_http(e->code), "application/json", &out);
    buf_release(&out);
}

/* ---------------------------------------------------------------- POST /streams/{stream} */

/* Decode, validate and submit one JSON document as an append to r->stream. */
static payi_code decode_one(http_req *r, evjson_batch *b, const json_doc *doc, payi_err *err)
{
    size_t mark = b->n;
    payi_code rc = evjson_decode_in_stream(b, doc, r->stream.data ? r->stream.data : "", r->stream.len, err);
    if (rc != PAYI_OK)
        return rc;
    evjson_batch_seal_from(b, mark);   /* log_validate reads the strings */
    rc = log_validate(r->srv->log, &b->appends[mark], err);
    if (rc != PAYI_OK)
        b->n = mark;   /* its text stays behind unused until the batch is released */
    return rc;
}

static void json_error_to_err(const json_error *je, payi_err *err, char *extra, size_t extra_size)
{
    payi_err_set(err, PAYI_BAD_JSON, NULL, "malformed JSON at line %u, column %u: %s", je->line, je->col, je->msg);
    snprintf(extra, extra_size, ",\"line\":%u,\"col\":%u", je->line, je->col);
}

/* The answer to a completed append: 201, 200 for a repeat, or the error. */
static void write_append_result(buf *out, const log_append *a)
{
    if (a->status == PAYI_OK) {
        evjson_write_append_result(out, a);
        return;
    }
    char extra[48] = "";
    if (a->status == PAYI_CONFLICT)
        snprintf(extra, sizeof extra, ",\"actual_version\":%" PRId64, a->actual_version);
    write_error(out, &a->err, extra);
}

static enum MHD_Result append_json(http_req *r, struct MHD_Connection *c)
{
    json_doc doc = JSON_DOC_INIT;
    json_error je;
    payi_err err;
    char extra[64] = "";
    evjson_batch *b = xmalloc(sizeof *b);
    evjson_batch_init(b);
    b->reg = r->srv->reg;
    payi_code rc = PAYI_OK;
    if (!json_parse(&doc, r->body.data ? r->body.data : "", r->body.len, NULL, &je)) {
        json_error_to_err(&je, &err, extra, sizeof extra);
        rc = PAYI_BAD_JSON;
    } else {
        rc = decode_one(r, b, &doc, &err);
    }
    json_doc_release(&doc);
    if (rc != PAYI_OK) {
        evjson_batch_release(b);
        free(b);
        return send_error_extra(r, c, &err, extra);
    }
    r->batch = b;   /* answered by append_json_done once durable */
    park(r);
    log_submit_cb(r->srv->log, &b->appends[0], 1, false, wake, r);
    return MHD_YES;
}

static enum MHD_Result append_json_done(http_req *r, struct MHD_Connection *c)
{
    log_append *a = &r->batch->appends[0];
    buf out = BUF_INIT;
    write_append_result(&out, a);
    int status = a->status != PAYI_OK ? payi_code_http(a->status) : a->events[0].duplicate ? 200 : 201;
    enum MHD_Result mr = send_json(r, c, status, &out);
    buf_release(&out);
    return mr;
}

/* One input line of an NDJSON body: the append it became, or why not. */
struct nd_line {
    uint32_t lineno;
    int64_t append;             /* index into the batch, or -1 with err */
    payi_err err;
    char extra[64];
};

static void nd_decode_line(http_req *r, evjson_batch *b, json_doc *doc, const char *s, size_t len, nd_line *l)
{
    json_error je;
    l->append = -1;
    l->extra[0] = '\0';
    if (!json_parse(doc, s, len, NULL, &je)) {
        snprintf(l->extra, sizeof l->extra, ",\"line\":%u,\"col\":%u", l->lineno, je.col);
        payi_err_set(&l->err, PAYI_BAD_JSON, NULL, "malformed JSON at line %u, column %u: %s", l->lineno, je.col,
                     je.msg);
        return;
    }
    if (decode_one(r, b, doc, &l->err) == PAYI_OK)
        l->append = (int64_t)b->n - 1;
    else
        snprintf(l->extra, sizeof l->extra, ",\"line\":%u", l->lineno);
}

/* Split the body into lines and decode each; blank lines are skipped. */
static nd_line *nd_decode_all(http_req *r, evjson_batch *b, size_t *nlines)
{
    nd_line *lines = NULL;
    size_t n = 0, cap = 0;
    json_doc doc = JSON_DOC_INIT;
    const char *p = r->body.data ? r->body.data : "", *end = p + r->body.len;
    for (uint32_t lineno = 1; p < end; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t len = (size_t)(stop - p);
        while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            lines = xgrow(lines, &cap, n + 1, sizeof *lines);
            lines[n].lineno = lineno;
            nd_decode_line(r, b, &doc, p, len, &lines[n]);
            n++;
        }
        p = nl ? nl + 1 : end;
    }
    json_doc_release(&doc);
    *nlines = n;
    return lines;
}

static enum MHD_Result append_ndjson_done(http_req *r, struct MHD_Connection *c)
{
    evjson_batch *b = r->batch;
    nd_line *lines = r->lines;
    buf out = BUF_INIT;
    for (size_t i = 0; i < r->nlines; i++) {
        if (lines[i].append >= 0 && b->appends[lines[i].append].status == PAYI_OK) {
            write_append_result(&out, &b->appends[lines[i].append]);
        } else if (lines[i].append >= 0) {
            const log_append *a = &b->appends[lines[i].append];
            char extra[96];
            snprintf(extra, sizeof extra, ",\"line\":%u", lines[i].lineno);
            if (a->status == PAYI_CONFLICT)
                snprintf(extra, sizeof extra, ",\"line\":%u,\"actual_version\":%" PRId64, lines[i].lineno,
                         a->actual_version);
            write_error(&out, &a->err, extra);
        } else {
            write_error(&out, &lines[i].err, lines[i].extra);
        }
        buf_putc(&out, '\n');
    }
    enum MHD_Result mr = send_body(r, c, 200, "application/x-ndjson", &out);
    buf_release(&out);
    return mr;
}

static enum MHD_Result append_ndjson(http_req *r, struct MHD_Connection *c)
{
    evjson_batch *b = xmalloc(sizeof *b);
    evjson_batch_init(b);
    b->reg = r->srv->reg;
    r->batch = b;
    r->lines = nd_decode_all(r, b, &r->nlines);
    if (!b->n)
        return append_ndjson_done(r, c);
    evjson_batch_seal(b);
    /* One submission: the lines share group commits; a failed line does not stop the others. */
    park(r);
    log_submit_cb(r->srv->log, b->appends, (uint32_t)b->n, false, wake, r);
    return MHD_YES;
}

/* ---------------------------------------------------------------- POST /commands/{Name} */

/* After cmd_start or cmd_resume: the answer is ready, or the command waits
 * for its append (the connection stays suspended until wake). */
static void command_step(http_req *r, payi_code rc, int status, buf *out, const payi_err *err)
{
    if (r->call)
        return;
    if (rc == PAYI_OK)
        ready_answer(r, status, "application/json", out);
    else
        ready_error(r, err);
    MHD_resume_connection(r->conn);   /* answered on the resumption: no answer may be queued while suspended */
}

static enum MHD_Result command_json(http_req *r, struct MHD_Connection *c)
{
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    buf out = BUF_INIT;
    payi_err err;
    int status = 0;
    park(r);   /* before cmd_start, which may submit: see "suspension" */
    payi_code rc = cmd_start(r->srv->cmd, r->stream.data ? r->stream.data : "", r->stream.len,
                             r->body.data ? r->body.data : "", r->body.len, key, key ? strlen(key) : 0, wake, r,
                             &r->call, &status, &out, &err);
    command_step(r, rc, status, &out, &err);
    buf_release(&out);
    return MHD_YES;
}

/* The command's append completed: answer (cmd_resume finishes any retry itself). */
static enum MHD_Result command_done(http_req *r, struct MHD_Connection *c)
{
    buf out = BUF_INIT;
    payi_err err;
    int status = 0;
    cmd_call *call = r->call;
    r->call = NULL;
    payi_code rc = cmd_resume(call, &status, &out, &err);
    enum MHD_Result mr = rc == PAYI_OK ? send_json(r, c, status, &out) : send_error(r, c, &err);
    buf_release(&out);
    return mr;
}

/* An NDJSON batch of commands decides line after line and waits for its
 * appends: it runs on a thread of its own, then resumes the connection. */
static void *command_ndjson_main(void *arg)
{
    http_req *r = arg;
    buf out = BUF_INIT;
    cmd_execute_ndjson(r->srv->cmd, r->stream.data ? r->stream.data : "", r->stream.len,
                       r->body.data ? r->body.data : "", r->body.len, &out);
    ready_answer(r, 200, "application/x-ndjson", &out);
    buf_release(&out);
    MHD_resume_connection(r->conn);
    return NULL;
}

static enum MHD_Result command_ndjson(http_req *r, struct MHD_Connection *c)
{
    park(r);
    if (pthread_create(&r->worker, NULL, command_ndjson_main, r) != 0) {
        payi_err e;
        payi_err_set(&e, PAYI_UNAVAILABLE, NULL, "cannot start a thread for the batch");
        ready_error(r, &e);
        MHD_resume_connection(c);
        return MHD_YES;
    }
    r->has_worker = true;
    return MHD_YES;
}

static bool is_ndjson(struct MHD_Connection *c)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct && (!strncasecmp(ct, "application/x-ndjson", 20) || !strncasecmp(ct, "application/ndjson", 18));
}

/* Headers seen: refuse a declared body over the limit before reading it. */
static enum MHD_Result append_begin(http_req *r, struct MHD_Connection *c)
{
    r->ndjson = is_ndjson(c);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t len = 0;
    if (cl && parse_u64(cl, &len) && len > r->srv->opt.max_body) {
        payi_err e;
        payi_err_set(&e, PAYI_TOO_LARGE, "body", "request body of %" PRIu64 " bytes exceeds the limit of %" PRIu64
                     " bytes", len, r->srv->opt.max_body);
        return send_error(r, c, &e);
    }
    if (len)
        buf_reserve(&r->body, (size_t)len);
    return MHD_YES;
}

/* A piece of body: kept while under the limit; past it, read and dropped, so
 * that the answer can still be given (MHD queues answers only before the body
 * or after all of it). */
static void append_take(http_req *r, const char *data, size_t n)
{
    if (r->too_big || r->body.len + n > r->srv->opt.max_body) {
        r->too_big = true;
        buf_release(&r->body);
        return;
    }
    buf_put(&r->body, data, n);
}

static enum MHD_Result append_end(http_req *r, struct MHD_Connection *c)
{
    if (r->too_big) {
        payi_err e;
        payi_err_set(&e, PAYI_TOO_LARGE, "body", "request body exceeds the limit of %" PRIu64 " bytes",
                     r->srv->opt.max_body);
        return send_error(r, c, &e);
    }
    if (r->route == R_COMMAND)
        return r->ndjson ? command_ndjson(r, c) : command_json(r, c);
    return r->ndjson ? append_ndjson(r, c) : append_json(r, c);
}

/* ---------------------------------------------------------------- GET /streams/{stream}, GET /all */

typedef struct read_out {
    buf *out;
    const registry *reg;
    uint64_t head;              /* events at or past it were not visible when the read began */
    uint64_t n;
} read_out;

static int put_event(void *ctx, const log_event *ev)
{
    read_out *o = ctx;
    if (ev->position >= o->head)
        return 1;
    if (o->n++)
        buf_putc(o->out, ',');
    evjson_write_event(o->out, ev, o->reg);
    return 0;
}

static enum MHD_Result handle_read(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    read_params p;
    payi_log *log = r->srv->log;
    if (parse_read_params(c, &p, &err) != PAYI_OK)
        return send_error(r, c, &err);
    if (r->route == R_STREAM && check_stream_name(&r->stream, &err) != PAYI_OK)
        return send_error(r, c, &err);
    buf out = BUF_INIT;
    read_out o = {&out, r->srv->reg, log_head(log), 0};
    uint64_t from = p.backwards && !p.from_set ? UINT64_MAX : p.from;
    buf_puts(&out, "{\"events\":[");
    payi_code rc = r->route == R_ALL
                       ? log_read_all(log, from, p.limit, p.backwards, put_event, &o, &err)
                       : log_read_stream(log, r->stream.data, (uint32_t)r->stream.len, from, p.limit, p.backwards,
                                         put_event, &o, &err);
    enum MHD_Result mr;
    if (rc != PAYI_OK) {
        mr = send_error(r, c, &err);
    } else {
        buf_puts(&out, "],\"head\":");
        buf_put_u64(&out, o.head);
        buf_putc(&out, '}');
        mr = send_json(r, c, 200, &out);
    }
    buf_release(&out);
    return mr;
}

/* ---------------------------------------------------------------- GET /events (SSE) */

struct sse {
    http_server *srv;
    struct MHD_Connection *conn;
    int fd;                     /* the client's socket: looked at for hang-up while idle */
    log_sub *sub;               /* GET /events */
    int view;                   /* GET /views/{name}/changes: the view; -1 for /events */
    view_change_filter *filter; /* its ?col=value filters, or NULL */
    uint64_t seq;               /* the last change sent */
    buf out;                    /* text not yet handed to MHD, from off */
    size_t off;
    int64_t keepalive_at;       /* monotonic ns */
    bool done;                  /* an error event was written: end after it */
    bool parked;                /* on srv->parked, suspended until the waker resumes it */
    sse *next;
};

static void sse_free(void *cls)
{
    sse *s = cls;
    if (s->sub)
        log_sub_close(s->sub);
    view_change_filter_free(s->filter);
    buf_release(&s->out);
    atomic_fetch_sub_explicit(&s->srv->sse_clients, 1, memory_order_relaxed);
    free(s);
}

static bool client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int n = poll(&p, 1, 0);
    return n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void sse_put_event(sse *s, const log_event *ev)
{
    buf_puts(&s->out, "id: ");
    buf_put_u64(&s->out, ev->position);
    buf_puts(&s->out, "\ndata: ");
    evjson_write_event(&s->out, ev, s->srv->reg);   /* one line: evjson escapes every control character */
    buf_puts(&s->out, "\n\n");
}

static void sse_put_error(sse *s, const payi_err *err)
{
    buf_puts(&s->out, "event: error\ndata: ");
    write_error(&s->out, err, NULL);
    buf_puts(&s->out, "\n\n");
    s->done = true;
}

static int64_t keepalive_ns(const sse *s) { return (int64_t)s->srv->opt.sse_keepalive_ms * 1000000; }

/* Put into s->out the events there are now, else a keep-alive comment when
 * due.  Returns 0 (out may still be empty: nothing to send yet) or the MHD
 * end code when the stream is over.  Never waits: this runs on an MHD thread
 * that serves other connections too. */
static ssize_t sse_fill(sse *s, size_t max)
{
    if (s->done || atomic_load(&s->srv->stopping))
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->view >= 0)
        view_engine_changes(s->srv->views, (uint32_t)s->view, &s->seq, max, s->filter, &s->out);
    while (s->view < 0 && s->out.len < max) {
        log_event ev;
        payi_err err;
        payi_code rc = log_sub_next(s->sub, &ev, 0, &err);
        if (rc == PAYI_TIMEOUT)
            break;
        if (rc != PAYI_OK) {
            sse_put_error(s, &err);
            break;
        }
        sse_put_event(s, &ev);
    }
    if (!s->out.len && client_gone(s->fd))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (!s->out.len && time_mono_ns() >= s->keepalive_at)
        buf_puts(&s->out, ": keepalive\n\n");
    if (s->out.len)
        s->keepalive_at = time_mono_ns() + keepalive_ns(s);
    return 0;
}

/* Nothing to send: suspend until the waker resumes us (new events, or the
 * next slice).  Under park_mu, the head is looked at again: an event that
 * arrived since sse_fill is seen here or wakes the waker after we are on
 * the list, so none is missed. */
static void sse_park(sse *s)
{
    http_server *srv = s->srv;
    pthread_mutex_lock(&srv->park_mu);
    bool idle;
    if (s->view >= 0) {
        idle = view_engine_change_head(srv->views, (uint32_t)s->view) <= s->seq;
    } else {
        log_cursor cur;
        log_sub_cursor(s->sub, &cur);
        idle = log_head(srv->log) <= cur.next[0];
    }
    if (idle && !atomic_load(&srv->stopping)) {
        s->parked = true;
        s->next = srv->parked;
        srv->parked = s;
        atomic_fetch_add(&srv->suspended, 1);
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&srv->park_mu);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    sse *s = cls;
    if (s->off == s->out.len) {
        buf_reset(&s->out);
        s->off = 0;
        ssize_t end = sse_fill(s, max);
        if (end)
            return end;
        if (!s->out.len) {
            sse_park(s);
            return 0;
        }
    }
    size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
    memcpy(dst, s->out.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void resume_parked(http_server *srv)
{
    pthread_mutex_lock(&srv->park_mu);
    for (sse *s = srv->parked, *n; s; s = n) {
        n = s->next;
        s->parked = false;
        s->next = NULL;
        atomic_fetch_sub(&srv->suspended, 1);
        MHD_resume_connection(s->conn);
    }
    srv->parked = NULL;
    pthread_mutex_unlock(&srv->park_mu);
}

/* The waker: resumes the parked event streams when the head moves, and
 * every SSE_SLICE_MS for keep-alives and shutdown. */
static void *waker_main(void *arg)
{
    http_server *srv = arg;
    uint64_t seen = log_head(srv->log);
    while (!atomic_load(&srv->stopping)) {
        seen = log_wait_head(srv->log, seen, SSE_SLICE_MS);
        resume_parked(srv);
    }
    resume_parked(srv);
    return NULL;
}

/* from: Last-Event-ID (a reconnecting client) wins over ?from=. */
static payi_code sse_from(struct MHD_Connection *c, uint64_t *from, payi_err *err)
{
    const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    uint64_t id;
    if (last) {
        if (!parse_u64(last, &id) || id == UINT64_MAX)
            return payi_err_set(err, PAYI_VALIDATION, "Last-Event-ID", "Last-Event-ID must be an event position");
        *from = id + 1;
        return PAYI_OK;
    }
    buf v = BUF_INIT;
    int have = query_param(c, "from", &v);
    bool ok = have == 0 || (have > 0 && parse_u64(v.data, from));
    buf_release(&v);
    if (!ok)
        return payi_err_set(err, PAYI_VALIDATION, "from", "from must be a whole number >= 0");
    if (have == 0)
        *from = 0;
    return PAYI_OK;
}

/* Queue the event stream s as the answer; hello is sent at once, so the
 * client sees the stream open before any event.  s lives on with the
 * queued response and is freed by sse_free. */
static enum MHD_Result sse_respond(http_req *r, struct MHD_Connection *c, sse *s, const char *hello)
{
    buf_puts(&s->out, hello);
    atomic_fetch_add_explicit(&r->srv->sse_clients, 1, memory_order_relaxed);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, s, sse_free);
    if (!resp) {
        sse_free(s);
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    if (rc == MHD_YES)
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (rc == MHD_YES)
        rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES)
        r->status = MHD_HTTP_OK;
    return rc;
}

static enum MHD_Result handle_events(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    uint64_t from;
    if (sse_from(c, &from, &err) != PAYI_OK)
        return send_error(r, c, &err);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return MHD_NO;
    sse *s = xcalloc(1, sizeof *s);
    s->srv = r->srv;
    s->conn = c;
    s->fd = ci->connect_fd;
    s->view = -1;
    log_cursor cur;
    log_cursor_at(&cur, from);
    s->sub = log_sub_open(r->srv->log, &cur);
    s->keepalive_at = time_mono_ns() + keepalive_ns(s);
    return sse_respond(r, c, s, ": payi events\n\n");
}

/* ---------------------------------------------------------------- GET /health, GET /metrics */

static enum MHD_Result handle_health(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    payi_code state = log_state(r->srv->log, &err);
    buf out = BUF_INIT;
    char head[48];
    snprintf(head, sizeof head, ",\"head\":%" PRIu64, log_head(r->srv->log));
    if (state == PAYI_OK) {
        buf_puts(&out, "{\"status\":\"ok\"");
        buf_puts(&out, head);
        buf_putc(&out, '}');
    } else {
        write_error(&out, &err, head);
    }
    enum MHD_Result rc = send_json(r, c, state == PAYI_OK ? 200 : 503, &out);
    buf_release(&out);
    return rc;
}

static void metric(buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static void metrics_log(buf *out, payi_log *log)
{
    log_stats st;
    log_get_stats(log, &st);
    metric(out, "payi_events_total", "counter", "Events in the log.", st.events);
    metric(out, "payi_streams", "gauge", "Streams in the log.", st.streams);
    metric(out, "payi_segments", "gauge", "Segment files.", st.segments);
    metric(out, "payi_log_bytes", "gauge", "Bytes in segment files.", st.bytes);
    metric(out, "payi_fsyncs_total", "counter", "fdatasync calls by the writer.", st.fsyncs);
    metric(out, "payi_batches_total", "counter", "Write batches (group commits).", st.batches_written);
    payi_code state = log_state(log, NULL);
    metric(out, "payi_log_writable", "gauge", "1 while the log accepts appends.", state == PAYI_OK);
}

static void metrics_requests(buf *out, http_server *s)
{
    buf_puts(out, "# HELP payi_http_requests_total HTTP requests answered, by route and status.\n"
                  "# TYPE payi_http_requests_total counter\n");
    for (int r = 0; r < R__N; r++)
        for (int code = 100; code < 600; code++) {
            uint64_t n = atomic_load_explicit(&s->stats[r].by_status[code], memory_order_relaxed);
            if (n)
                buf_printf(out, "payi_http_requests_total{route=\"%s\",code=\"%d\"} %" PRIu64 "\n", route_label[r],
                           code, n);
        }
}

static void metrics_durations(buf *out, http_server *s)
{
    buf_puts(out, "# HELP payi_http_request_duration_seconds Time from request headers to the end of the answer.\n"
                  "# TYPE payi_http_request_duration_seconds histogram\n");
    for (int r = 0; r < R__N; r++) {
        route_stats *st = &s->stats[r];
        uint64_t count = atomic_load_explicit(&st->count, memory_order_relaxed), cum = 0;
        if (!count)
            continue;
        for (int b = 0; b <= HIST_N; b++) {
            cum += atomic_load_explicit(&st->bucket[b], memory_order_relaxed);
            if (b < HIST_N)
                buf_printf(out, "payi_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                           route_label[r], hist_le[b], cum);
            else
                buf_printf(out, "payi_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                           route_label[r], cum);
        }
        buf_printf(out, "payi_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n", route_label[r],
                   (double)atomic_load_explicit(&st->sum_ns, memory_order_relaxed) / 1e9);
        buf_printf(out, "payi_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n", route_label[r], cum);
    }
}

static void metrics_views(buf *out, view_engine *ve);   /* with the view routes, below */
static void metrics_generators(buf *out, gen_engine *g);

static enum MHD_Result handle_metrics(http_req *r, struct MHD_Connection *c)
{
    buf out = BUF_INIT;
    metrics_log(&out, r->srv->log);
    metrics_requests(&out, r->srv);
    metrics_durations(&out, r->srv);
    metric(&out, "payi_http_sse_clients", "gauge", "Open event streams (GET /events).",
           (uint64_t)atomic_load(&r->srv->sse_clients));
    if (r->srv->cmd) {
        cmd_stats cs;
        cmd_get_stats(r->srv->cmd, &cs);
        metric(&out, "payi_commands_total", "counter", "Commands executed (any outcome).", cs.executed);
        metric(&out, "payi_commands_rejected_total", "counter", "Commands refused by a REJECT rule or reject().",
               cs.rejected);
        metric(&out, "payi_commands_failed_total", "counter", "Commands that failed otherwise (validation, I/O, ...).",
               cs.failed);
        metric(&out, "payi_commands_retried_total", "counter", "Decisions taken again after a version conflict.",
               cs.conflicts_retried);
        metric(&out, "payi_state_cache_hits_total", "counter", "Commands whose stream state was cached.",
               cs.cache_hits);
        metric(&out, "payi_state_cache_misses_total", "counter", "Commands whose stream state was folded from the log.",
               cs.cache_misses);
        metric(&out, "payi_state_cache_entries", "gauge", "Stream states in the cache.", cs.cache_entries);
    }
    if (r->srv->views)
        metrics_views(&out, r->srv->views);
    if (gen_engine_count(r->srv->gens))
        metrics_generators(&out, r->srv->gens);
    enum MHD_Result rc = send_body(r, c, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
    buf_release(&out);
    return rc;
}

/* ---------------------------------------------------------------- views */

static void views_changed(void *ctx) { resume_parked(ctx); }

static enum MHD_Result take_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    http_req *r = cls;
    (void)kind;
    buf k = BUF_INIT, v = BUF_INIT;
    if (!pct_decode(key, strlen(key), &k) || !pct_decode(value ? value : "", value ? strlen(value) : 0, &v) ||
        memchr(k.data ? k.data : "", 0, k.len) || memchr(v.data ? v.data : "", 0, v.len) || r->nqp == 64) {
        buf_release(&k);
        buf_release(&v);
        r->nqp = SIZE_MAX;   /* malformed: reported by the caller */
        return MHD_NO;
    }
    r->qp = xrealloc(r->qp, (r->nqp + 1) * sizeof *r->qp);
    r->qp[r->nqp].key = k.data ? k.data : xstrdup("");
    r->qp[r->nqp].value = v.data ? v.data : xstrdup("");
    r->nqp++;
    return MHD_YES;
}

/* The view named in the path, or an error answer. */
static bool find_view(http_req *r, payi_err *err)
{
    r->view = view_engine_find(r->srv->views, r->stream.data ? r->stream.data : "", r->stream.len);
    if (r->view >= 0)
        return true;
    payi_err_set(err, PAYI_NOT_FOUND, "view", "no view named \"%.100s\"", r->stream.data ? r->stream.data : "");
    return false;
}

static void view_query(http_req *r, int *status, buf *out)
{
    payi_err err;
    if (view_engine_query(r->srv->views, (uint32_t)r->view, r->qp, r->nqp, out, &err) == PAYI_OK) {
        *status = 200;
        return;
    }
    buf_reset(out);
    write_error(out, &err, NULL);
    *status = payi_code_http(err.code);
}

static void *view_query_main(void *arg)
{
    http_req *r = arg;
    buf out = BUF_INIT;
    int status;
    view_query(r, &status, &out);
    ready_answer(r, status, "application/json", &out);
    buf_release(&out);
    MHD_resume_connection(r->conn);
    return NULL;
}

/* min_position above what the view has applied: the read waits, on a
 * thread of its own so that the connection threads keep serving. */
static bool must_wait(http_req *r)
{
    for (size_t i = 0; i < r->nqp; i++)
        if (!strcmp(r->qp[i].key, "min_position")) {
            uint64_t want;
            view_status st;
            if (!parse_u64(r->qp[i].value, &want))
                return false;   /* the query reports it */
            view_engine_status(r->srv->views, (uint32_t)r->view, &st);
            return st.position < want;
        }
    return false;
}

static enum MHD_Result handle_view(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    if (!find_view(r, &err))
        return send_error(r, c, &err);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, take_param, r);
    if (r->nqp == SIZE_MAX) {
        r->nqp = 0;
        payi_err_set(&err, PAYI_VALIDATION, NULL, "malformed query string (a bad %%-escape, a NUL, or over 64 parameters)");
        return send_error(r, c, &err);
    }
    if (must_wait(r)) {
        park(r);
        if (pthread_create(&r->worker, NULL, view_query_main, r) != 0) {
            payi_err_set(&err, PAYI_UNAVAILABLE, NULL, "cannot start a thread for the read");
            ready_error(r, &err);
            MHD_resume_connection(c);
            return MHD_YES;
        }
        r->has_worker = true;
        return MHD_YES;
    }
    buf out = BUF_INIT;
    int status;
    view_query(r, &status, &out);
    enum MHD_Result rc = send_body(r, c, status, "application/json", &out);
    buf_release(&out);
    return rc;
}

static enum MHD_Result handle_view_changes(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    if (!find_view(r, &err))
        return send_error(r, c, &err);
    const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    uint64_t seq = 0;
    if (last && !parse_u64(last, &seq)) {
        payi_err_set(&err, PAYI_VALIDATION, "Last-Event-ID", "Last-Event-ID must be a change number");
        return send_error(r, c, &err);
    }
    if (!last)
        seq = view_engine_change_head(r->srv->views, (uint32_t)r->view);   /* from now on */
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, take_param, r);
    if (r->nqp == SIZE_MAX) {
        r->nqp = 0;
        payi_err_set(&err, PAYI_VALIDATION, NULL, "malformed query string (a bad %%-escape, a NUL, or over 64 parameters)");
        return send_error(r, c, &err);
    }
    view_change_filter *filter;
    if (view_change_filter_make(r->srv->views, (uint32_t)r->view, r->qp, r->nqp, &filter, &err) != PAYI_OK)
        return send_error(r, c, &err);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) {
        view_change_filter_free(filter);
        return MHD_NO;
    }
    sse *s = xcalloc(1, sizeof *s);
    s->filter = filter;
    s->srv = r->srv;
    s->conn = c;
    s->fd = ci->connect_fd;
    s->view = r->view;
    s->seq = seq;
    s->keepalive_at = time_mono_ns() + keepalive_ns(s);
    return sse_respond(r, c, s, ": payi view changes\n\n");
}

/* POST /sql: the statement as the body (text), or {"sql":"..."} as JSON. */
static enum MHD_Result handle_sql(http_req *r, struct MHD_Connection *c)
{
    payi_err err;
    if (r->too_big) {
        payi_err_set(&err, PAYI_TOO_LARGE, "body", "the SQL is over the body limit of %" PRIu64 " bytes",
                     r->srv->opt.max_body);
        return send_error(r, c, &err);
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    buf sql = BUF_INIT;
    const char *body = r->body.data ? r->body.data : "";
    if (ct && !strncasecmp(ct, "application/json", 16)) {
        json_doc d = JSON_DOC_INIT;
        json_error je;
        uint32_t v = UINT32_MAX;
        if (!json_parse(&d, body, r->body.len, NULL, &je)) {
            json_doc_release(&d);
            payi_err_set(&err, PAYI_BAD_JSON, "body", "line %u, column %u: %s", je.line, je.col, je.msg);
            return send_error(r, c, &err);
        }
        if (d.nodes[0].kind == JSON_OBJECT)
            v = json_object_get(&d, 0, "sql");
        bool ok = v != UINT32_MAX && d.nodes[v].kind == JSON_STRING && json_get_string(&d, v, &sql);
        json_doc_release(&d);
        if (!ok) {
            buf_release(&sql);
            payi_err_set(&err, PAYI_VALIDATION, "sql", "expected {\"sql\": \"SELECT ...\"}");
            return send_error(r, c, &err);
        }
    } else {
        size_t bad;
        if (!json_utf8_valid(body, r->body.len, &bad) || memchr(body, 0, r->body.len)) {
            payi_err_set(&err, PAYI_VALIDATION, "sql", "the SQL is not valid UTF-8 text");
            return send_error(r, c, &err);
        }
        buf_put(&sql, body, r->body.len);
    }
    buf out = BUF_INIT;
    enum MHD_Result rc;
    if (view_engine_sql(r->srv->views, sql.data ? sql.data : "", 0, &out, &err) == PAYI_OK)
        rc = send_json(r, c, 200, &out);
    else
        rc = send_error(r, c, &err);
    buf_release(&out);
    buf_release(&sql);
    return rc;
}

typedef struct metric_def {
    const char *name, *type, *help;
} metric_def;

/* One family per metric of m, each with a sample per item: v[i * nm + k] is
 * metric k of item i, labelled label="names[i]".  The callers take each
 * item's status once, so the families agree with each other. */
static void metric_families(buf *out, const metric_def *m, size_t nm, const char *label, const char *const *names,
                            const uint64_t *v, uint32_t n)
{
    for (size_t k = 0; k < nm; k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
        for (uint32_t i = 0; i < n; i++)
            buf_printf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", m[k].name, label, names[i], v[(size_t)i * nm + k]);
    }
}

static void metrics_views(buf *out, view_engine *ve)
{
    static const metric_def m[] = {
        {"payi_view_position", "gauge", "Every event below this position is applied to the view."},
        {"payi_view_events_folded_total", "counter", "Events folded into the view since start."},
        {"payi_view_events_skipped_total", "counter", "Events the view could not evaluate (skipped)."},
        {"payi_view_rows_written_total", "counter", "Rows merged into or deleted from the view's table."},
        {"payi_view_batches_total", "counter", "Store transactions of the view."},
        {"payi_view_failed", "gauge", "1 while the view is stopped on a store error."}};
    enum { NM = sizeof m / sizeof *m };
    uint32_t n = view_engine_count(ve);
    const char **names = xcalloc(n + 1, sizeof *names);
    uint64_t *v = xcalloc((size_t)n * NM + 1, sizeof *v);
    for (uint32_t i = 0; i < n; i++) {
        view_status st;
        view_engine_status(ve, i, &st);
        names[i] = view_engine_def(ve, i)->name;
        uint64_t row[NM] = {st.position, st.events_folded, st.events_skipped, st.rows_written, st.batches, st.failed};
        memcpy(v + (size_t)i * NM, row, sizeof row);
    }
    metric_families(out, m, NM, "view", names, v, n);
    free(names);
    free(v);
}

static void metrics_generators(buf *out, gen_engine *g)
{
    static const metric_def m[] = {
        {"payi_generator_position", "gauge", "Every input below this position is processed, its events durable."},
        {"payi_generator_inputs_total", "counter", "Input events applied since start."},
        {"payi_generator_emitted_total", "counter", "Derived events appended (new ones)."},
        {"payi_generator_repeated_total", "counter", "Derived events the log already held (a replay)."},
        {"payi_generator_late_values_total", "counter", "Values for a day already passed (not applied)."},
        {"payi_generator_skipped_total", "counter", "Inputs with a NULL or failing KEY, DAY or VALUE."},
        {"payi_generator_clamped", "gauge", "Negative daily values clamped to 0."},
        {"payi_generator_keys", "gauge", "Series (keys) followed."},
        {"payi_generator_looking_ahead", "gauge", "1 while moved keys wait for their look ahead."},
        {"payi_generator_failed", "gauge", "1 when the generator stopped on an error."}};
    enum { NM = sizeof m / sizeof *m };
    uint32_t n = gen_engine_count(g);
    const char **names = xcalloc(n + 1, sizeof *names);
    uint64_t *v = xcalloc((size_t)n * NM + 1, sizeof *v);
    for (uint32_t i = 0; i < n; i++) {
        gen_status st;
        gen_engine_status(g, i, &st);
        names[i] = gen_engine_name(g, i);
        uint64_t row[NM] = {st.position, st.inputs,  st.emitted, st.repeated,      st.late_values,
                            st.skipped,  st.clamped, st.keys,    st.looking_ahead, st.failed};
        memcpy(v + (size_t)i * NM, row, sizeof row);
    }
    metric_families(out, m, NM, "generator", names, v, n);
    free(names);
    free(v);
}

/* ---------------------------------------------------------------- routing */

typedef enum { P_NONE, P_STREAMS, P_ALL, P_EVENTS, P_HEALTH, P_METRICS, P_COMMANDS, P_VIEWS, P_VIEW_CHANGES, P_SQL, P_STATIC } path_kind;

static path_kind match_path(const char *url, const char **stream, size_t *stream_len)
{
    static const char prefix[] = "/streams/", cprefix[] = "/commands/", vprefix[] = "/views/", changes[] = "/changes";
    if (!strncmp(url, prefix, sizeof prefix - 1)) {
        *stream = url + sizeof prefix - 1;
        *stream_len = strlen(*stream);
        return memchr(*stream, '/', *stream_len) ? P_NONE : P_STREAMS;
    }
    if (!strncmp(url, cprefix, sizeof cprefix - 1)) {
        *stream = url + sizeof cprefix - 1;
        *stream_len = strlen(*stream);
        return memchr(*stream, '/', *stream_len) || *stream_len == 0 ? P_NONE : P_COMMANDS;
    }
    if (!strncmp(url, vprefix, sizeof vprefix - 1)) {
        *stream = url + sizeof vprefix - 1;
        *stream_len = strlen(*stream);
        path_kind k = P_VIEWS;
        size_t cl = sizeof changes - 1;
        if (*stream_len > cl && !strcmp(*stream + *stream_len - cl, changes)) {
            *stream_len -= cl;
            k = P_VIEW_CHANGES;
        }
        return memchr(*stream, '/', *stream_len) || *stream_len == 0 ? P_NONE : k;
    }
    if (!strcmp(url, "/") || !strncmp(url, "/assets/", 8)) {
        *stream = url;
        *stream_len = strlen(url);
        return P_STATIC;
    }
    return !strcmp(url, "/all")       ? P_ALL
           : !strcmp(url, "/sql")     ? P_SQL
           : !strcmp(url, "/events")  ? P_EVENTS
           : !strcmp(url, "/health")  ? P_HEALTH
           : !strcmp(url, "/metrics") ? P_METRICS
                                      : P_NONE;
}

/* The route of (path, method); R_OTHER with *status 404 or 405 when none. */
static route pick_route(path_kind p, const char *method, int *status)
{
    bool get = !strcmp(method, MHD_HTTP_METHOD_GET), post = !strcmp(method, MHD_HTTP_METHOD_POST);
    static const route get_route[] = {[P_ALL] = R_ALL, [P_EVENTS] = R_EVENTS, [P_HEALTH] = R_HEALTH,
                                      [P_METRICS] = R_METRICS, [P_STREAMS] = R_STREAM, [P_VIEWS] = R_VIEW,
                                      [P_VIEW_CHANGES] = R_VIEW_CHANGES};
    *status = 0;
    if (p == P_NONE) {
        *status = MHD_HTTP_NOT_FOUND;
        return R_OTHER;
    }
    if (p == P_STATIC) {
        if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD))
            *status = MHD_HTTP_METHOD_NOT_ALLOWED;
        return R_STATIC;
    }
    if (p == P_STREAMS && post)
        return R_APPEND;
    if (p == P_COMMANDS || p == P_SQL) {
        if (!post)
            *status = MHD_HTTP_METHOD_NOT_ALLOWED;
        return p == P_SQL ? R_SQL : R_COMMAND;
    }
    if (get)
        return get_route[p];
    *status = MHD_HTTP_METHOD_NOT_ALLOWED;
    return p == P_STREAMS ? R_APPEND : R_OTHER;   /* R_APPEND only picks the Allow header */
}

/* Keep an error found with the headers, to be answered after the body. */
static void early_error(http_req *r, int status, const char *word, const payi_err *e)
{
    buf_reset(&r->early);
    write_error_word(&r->early, word, e, NULL);
    r->early_status = status;
}

static void route_error(http_req *r, int status, const char *url, const char *method)
{
    payi_err e;
    if (status == MHD_HTTP_NOT_FOUND) {
        payi_err_set(&e, PAYI_NOT_FOUND, NULL, "no such resource: %.200s", url);
        early_error(r, status, payi_code_word(e.code), &e);
    } else {
        payi_err_set(&e, PAYI_METHOD_NOT_ALLOWED, "method", "method %.20s is not allowed here", method);
        early_error(r, status, payi_code_word(e.code), &e);
    }
}

/* First call of a request: the headers are in.  Route it and keep any error
 * for later: nothing is answered before the body was read, because MHD
 * closes a keep-alive connection answered earlier.  Only a declared body over
 * the limit is refused at once (and the connection closes unread). */
static enum MHD_Result begin(http_req *r, struct MHD_Connection *c, const char *url, const char *method)
{
    const char *stream = NULL;
    size_t stream_len = 0;
    path_kind p = match_path(url, &stream, &stream_len);
    int status;
    r->route = pick_route(p, method, &status);
    if (status) {
        route_error(r, status, url, method);
        return MHD_YES;
    }
    if ((p == P_STREAMS || p == P_COMMANDS || p == P_VIEWS || p == P_VIEW_CHANGES || p == P_STATIC) &&
        !pct_decode(stream, stream_len, &r->stream)) {
        payi_err e;
        payi_err_set(&e, PAYI_VALIDATION, p == P_STREAMS ? "stream" : p == P_COMMANDS ? "command" : p == P_STATIC ? "path" : "view",
                     "the name in the path has a malformed %%-escape");
        early_error(r, payi_code_http(e.code), payi_code_word(e.code), &e);
        return MHD_YES;
    }
    if (r->route == R_COMMAND && !r->srv->cmd) {
        payi_err e;
        payi_err_set(&e, PAYI_UNKNOWN_COMMAND, NULL,
                     "no commands: the server runs without a spec (start it with payi serve --spec FILE)");
        early_error(r, payi_code_http(e.code), payi_code_word(e.code), &e);
        return MHD_YES;
    }
    if ((r->route == R_VIEW || r->route == R_VIEW_CHANGES || r->route == R_SQL) && !r->srv->views) {
        payi_err e;
        payi_err_set(&e, PAYI_NOT_FOUND, NULL,
                     "no views: the server runs without a spec that declares views (payi serve --spec FILE)");
        early_error(r, payi_code_http(e.code), payi_code_word(e.code), &e);
        return MHD_YES;
    }
    return r->route == R_APPEND || r->route == R_COMMAND || r->route == R_SQL ? append_begin(r, c) : MHD_YES;
}

/* Last call of a request: the whole body is in. */
static enum MHD_Result answer(http_req *r, struct MHD_Connection *c)
{
    if (r->early_status) {
        enum MHD_Result rc = send_json(r, c, r->early_status, &r->early);
        r->route = r->early_status == MHD_HTTP_METHOD_NOT_ALLOWED || r->early_status == MHD_HTTP_NOT_FOUND ? R_OTHER
                                                                                                         : r->route;
        return rc;
    }
    switch (r->route) {
    case R_COMMAND:
    case R_APPEND: return append_end(r, c);
    case R_STREAM:
    case R_ALL: return handle_read(r, c);
    case R_EVENTS: return handle_events(r, c);
    case R_HEALTH: return handle_health(r, c);
    case R_METRICS: return handle_metrics(r, c);
    case R_VIEW: return handle_view(r, c);
    case R_VIEW_CHANGES: return handle_view_changes(r, c);
    case R_SQL: return handle_sql(r, c);
    case R_STATIC: return (r->status = static_answer(c, r->stream.data ? r->stream.data : "", r->stream.len)) ? MHD_YES : MHD_NO;
    case R_OTHER:
    case R__N: break;
    }
    return MHD_NO;
}

/* MHD hands back a connection we suspended: its work is done. */
static enum MHD_Result resumed(http_req *r, struct MHD_Connection *c)
{
    r->parked = false;
    atomic_fetch_sub(&r->srv->suspended, 1);
    if (r->ready_status)
        return send_body(r, c, r->ready_status, r->ready_ctype, &r->ready);
    if (r->call)
        return command_done(r, c);
    if (r->batch)
        return r->ndjson ? append_ndjson_done(r, c) : append_json_done(r, c);
    return MHD_NO;   /* nothing was waiting: cannot happen */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    http_req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->srv = cls;
        r->conn = c;
        r->start_ns = time_mono_ns();
        *con_cls = r;
        return begin(r, c, url, method);
    }
    if (r->parked)
        return resumed(r, c);
    if (*upload_size) {   /* kept for appends; read and dropped for the rest */
        if ((r->route == R_APPEND || r->route == R_COMMAND || r->route == R_SQL) && !r->early_status && !r->status)
            append_take(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return r->status ? MHD_YES : answer(r, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    http_req *r = *con_cls;
    if (!r)
        return;
    count_request(cls, r);
    if (r->parked)   /* resumed, then closed by the client before MHD called us again */
        atomic_fetch_sub(&r->srv->suspended, 1);
    if (r->call) {   /* answered nothing, but its append completed: let the command finish */
        int status;
        buf out = BUF_INIT;
        payi_err err;
        cmd_resume(r->call, &status, &out, &err);
        buf_release(&out);
    }
    if (r->has_worker)
        pthread_join(r->worker, NULL);   /* it ended by resuming us: at most a moment ago */
    if (r->batch) {
        evjson_batch_release(r->batch);
        free(r->batch);
    }
    free(r->lines);
    for (size_t i = 0; i < r->nqp; i++) {
        free((char *)r->qp[i].key);
        free((char *)r->qp[i].value);
    }
    free(r->qp);
    buf_release(&r->ready);
    buf_release(&r->body);
    buf_release(&r->stream);
    buf_release(&r->early);
    free(r);
    *con_cls = NULL;
}

/* Keep the path and query as sent: we decode them ourselves (see the top). */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s) { return strlen(s); }

/* ---------------------------------------------------------------- listening */

void http_options_default(http_options *o)
{
    o->listen = "127.0.0.1:8080";
    o->max_body = 16u << 20;
    o->max_connections = 1024;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus < 1 ? 1 : cpus > 64 ? 64 : (unsigned)cpus;
    o->idle_timeout_s = 30;
    o->header_limit = 16u << 10;
    o->sse_keepalive_ms = 15000;
}

/* Split "HOST:PORT" or "[V6]:PORT" into host and port text. */
static payi_code split_listen(const char *s, char *host, size_t host_size, char *port, size_t port_size,
                              payi_err *err)
{
    const char *colon = s[0] == '[' ? strstr(s, "]:") : strrchr(s, ':');
    const char *h = s[0] == '[' ? s + 1 : s;
    const char *p = colon ? colon + (s[0] == '[' ? 2 : 1) : NULL;
    size_t hlen = colon ? (size_t)(colon - h) : 0;
    uint64_t num;
    if (!colon || hlen == 0 || hlen >= host_size || !parse_u64(p, &num) || num > 65535 || strlen(p) >= port_size)
        return payi_err_set(err, PAYI_USAGE, "listen", "--listen must be HOST:PORT (e.g. 127.0.0.1:8080), not '%.100s'",
                            s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%s", p);
    return PAYI_OK;
}

payi_code http_check_listen(const char *listen_at, payi_err *err)
{
    char host[256], port[8];
    return split_listen(listen_at, host, sizeof host, port, sizeof port, err);
}

static payi_code bind_listen(const char *listen_at, int *fd_out, payi_err *err)
{
    char host[256], port[8];
    payi_code rc = split_listen(listen_at, host, sizeof host, port, sizeof port, err);
    if (rc != PAYI_OK)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return payi_err_set(err, PAYI_USAGE, "listen", "cannot listen on %s: %s", listen_at, gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return payi_err_sys(err, PAYI_IO, e, "cannot listen on %s", listen_at);
    }
    freeaddrinfo(ai);
    *fd_out = fd;
    return PAYI_OK;
}

/* s->url from the bound address: the real port when 0 was asked. */
static payi_code name_listen(http_server *s, payi_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[INET6_ADDRSTRLEN];
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot read the listening address");
    bool v6 = ss.ss_family == AF_INET6;
    const void *a = v6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                       : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    unsigned port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    if (!inet_ntop(ss.ss_family, a, addr, sizeof addr))
        return payi_err_sys(err, PAYI_IO, errno, "cannot format the listening address");
    snprintf(s->url, sizeof s->url, v6 ? "http://[%s]:%u" : "http://%s:%u", addr, port);
    return PAYI_OK;
}

payi_code http_start(http_server **out, const http_backend *be, const http_options *o, payi_err *err)
{
    http_server *s = xcalloc(1, sizeof *s);
    s->log = be->log;
    s->reg = be->reg;
    s->cmd = be->cmd;
    s->views = be->views;
    s->gens = be->gens;
    s->opt = *o;
    payi_code rc = bind_listen(o->listen, &s->fd, err);
    if (rc == PAYI_OK && (rc = name_listen(s, err)) != PAYI_OK)
        close(s->fd);
    if (rc != PAYI_OK) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->park_mu, NULL);
    s->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, s,
        MHD_OPTION_THREAD_POOL_SIZE, o->threads,
        MHD_OPTION_LISTEN_SOCKET, s->fd, MHD_OPTION_CONNECTION_LIMIT, o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)o->header_limit, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_escaped, NULL, MHD_OPTION_END);
    if (!s->mhd) {
        close(s->fd);
        pthread_mutex_destroy(&s->park_mu);
        free(s);
        return payi_err_set(err, PAYI_INTERNAL, NULL, "cannot start the HTTP server (libmicrohttpd)");
    }
    if (pthread_create(&s->waker, NULL, waker_main, s) != 0) {
        http_stop(s);
        return payi_err_set(err, PAYI_INTERNAL, NULL, "cannot start the event-stream thread");
    }
    s->waker_started = true;
    if (s->views)
        view_engine_set_notify(s->views, views_changed, s);
    *out = s;
    return PAYI_OK;
}

const char *http_url(const http_server *s) { return s->url; }

void http_stop(http_server *s)
{
    if (!s)
        return;
    if (s->views)
        view_engine_set_notify(s->views, NULL, NULL);
    atomic_store(&s->stopping, true);   /* event streams end at their next resumption */
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);   /* stop accepting; the socket stays ours */
    if (s->waker_started)
        pthread_join(s->waker, NULL);   /* it resumed every parked event stream on its way out */
    resume_parked(s);
    /* MHD must not stop with suspended connections: the appends they wait
     * for complete (the log is still open), and they resume. */
    while (atomic_load(&s->suspended) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->mhd);
    pthread_mutex_destroy(&s->park_mu);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    free(s);
}
