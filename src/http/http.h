/* http.h — the HTTP face of the event store (libmicrohttpd).
 *
 * Routes (JSON unless stated; every error is {"error":{"code","message","field"?}}
 * with the HTTP status of the error table in base/err.h):
 *   POST /commands/{Name}    the command's fields as a JSON object -> 201 {"position","stream","version","events"};
 *                            Idempotency-Key header repeats the first answer;
 *                            application/x-ndjson: one command per line, answered line by line
 *   POST /streams/{stream}   one event or an array (atomic); application/x-ndjson: one append per line
 *   GET  /streams/{stream}?from=&limit=&backwards=   {"events":[...],"head":H}
 *   GET  /all?from=&limit=&backwards=                {"events":[...],"head":H}
 *   GET  /events?from=       Server-Sent Events: history, then live (Last-Event-ID resumes)
 *   GET  /health             {"status":"ok","head":H}, 503 when the log is read-only
 *   GET  /metrics            Prometheus text
 *   GET  /views/{name}?col=value&order=&limit=&min_position=   {"view","position","rows":[...]}
 *   GET  /views/{name}/changes   Server-Sent Events: the view's rows as each commit changes them
 *   POST /sql                read-only SQL on the read store (the body, or {"sql":...})
 *
 * Ownership: the server borrows the log, the registry and the command
 * engine; the caller closes them after http_stop.  http_stop returns once every connection thread has ended.
 */
#ifndef PAYI_HTTP_H
#define PAYI_HTTP_H

#include <stdint.h>

#include "base/err.h"
#include "command/command.h"
#include "event/registry.h"
#include "gen/generator.h"
#include "log/log.h"
#include "view/view.h"

typedef struct http_server http_server;

typedef struct http_options {
    const char *listen;           /* "HOST:PORT" or "[v6]:PORT"; port 0 picks a free one (default 127.0.0.1:8080) */
    uint64_t max_body;            /* largest request body in bytes (default 16 MiB) */
    unsigned max_connections;     /* concurrent connections (default 1024) */
    unsigned threads;             /* threads serving connections (default: one per CPU) */
    unsigned idle_timeout_s;      /* close a connection silent this long (default 30) */
    unsigned header_limit;        /* per-connection memory for the request line and headers (default 16 KiB; MHD zeroes it for every request) */
    unsigned sse_keepalive_ms;    /* ": keepalive" comment on an idle event stream (default 15000) */
} http_options;

void http_options_default(http_options *o);

/* Check the form of a listen address ("HOST:PORT", "[V6]:PORT", port 0..65535)
 * without resolving or binding it: PAYI_USAGE with the reason. */
payi_code http_check_listen(const char *listen, payi_err *err);

/* Bind, listen and start serving.  PAYI_USAGE for a bad listen address, PAYI_IO
 * (with the system's reason, e.g. "Address already in use") when the socket
 * cannot be bound. */
/* What the server serves: the log, the schemas of its typed events (may be
 * NULL), and the commands (NULL without a spec: /commands answers 404). */
typedef struct http_backend {
    payi_log *log;
    const registry *reg;
    cmd_engine *cmd;
    view_engine *views;   /* NULL without views: /views and /sql answer 404 */
    gen_engine *gens;     /* NULL without generators: only their metrics */
} http_backend;

payi_code http_start(http_server **out, const http_backend *b, const http_options *o, payi_err *err);
/* "http://HOST:PORT" of the bound socket (the real port when 0 was asked);
 * owned by the server, valid until http_stop. */
const char *http_url(const http_server *s);
/* Stop accepting, end event streams, wait for every connection, free. */
void http_stop(http_server *s);

#endif
