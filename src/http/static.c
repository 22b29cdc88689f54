/* static.c — the dashboard's built files, served from a directory (see static.h).
 *
 * A request goes through four gates before a byte of a file is sent:
 *   1. the path's form (check_path): "/" or "/assets/..." of non-empty
 *      segments, none starting with '.', no backslash, no NUL, under
 *      STATIC_PATH_MAX bytes;
 *   2. the root: realpath of the configured directory (a missing one is a
 *      404 that says how to build it);
 *   3. the file's real path (symlinks resolved) must be below the root's;
 *   4. open(O_NOFOLLOW) of that real path and fstat: a regular file.
 * The open file descriptor is handed to libmicrohttpd, which sends it with
 * sendfile and closes it when the response is done.
 */
#include "http/static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"

#define STATIC_PATH_MAX 1024    /* longest request path served */
#define STATIC_ENV "PAYI_WEB"

static pthread_mutex_t root_mu = PTHREAD_MUTEX_INITIALIZER;
static char root_set[PATH_MAX];       /* from static_set_root; "" when none */
static char root_found[PATH_MAX];     /* resolved from $PAYI_WEB or /proc/self/exe */
static bool root_resolved;

void static_set_root(const char *dir)
{
    pthread_mutex_lock(&root_mu);
    snprintf(root_set, sizeof root_set, "%s", dir ? dir : "");
    pthread_mutex_unlock(&root_mu);
}

/* $PAYI_WEB, else REPO/web/dist where the binary is REPO/<build dir>/payi. */
static void resolve_default(char *out, size_t size)
{
    const char *env = getenv(STATIC_ENV);
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(out, size, "web/dist");   /* no /proc: relative to the working directory */
        return;
    }
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) {   /* strip "/payi", then "/build" */
        char *slash = strrchr(exe, '/');
        if (slash && slash != exe)
            *slash = '\0';
        else
            snprintf(exe, sizeof exe, "/");
    }
    size_t len = strcmp(exe, "/") ? strlen(exe) : 0;
    if (len + sizeof "/web/dist" > size)
        len = 0;   /* cannot happen: both are PATH_MAX */
    memcpy(out, exe, len);
    memcpy(out + len, "/web/dist", sizeof "/web/dist");
}

const char *static_root(void)
{
    pthread_mutex_lock(&root_mu);
    if (!root_resolved) {
        resolve_default(root_found, sizeof root_found);
        root_resolved = true;
    }
    const char *r = root_set[0] ? root_set : root_found;
    pthread_mutex_unlock(&root_mu);
    return r;
}

/* ---------------------------------------------------------------- answers */

static const struct {
    const char *ext, *type;
} mime[] = {
    {".html", "text/html; charset=utf-8"},      {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},              {".map", "application/json"},
    {".svg", "image/svg+xml"},                  {".png", "image/png"},
    {".ico", "image/x-icon"},                   {".webp", "image/webp"},
    {".woff2", "font/woff2"},                   {".txt", "text/plain; charset=utf-8"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof mime / sizeof *mime; i++)
        if (!strcasecmp(dot, mime[i].ext))
            return mime[i].type;
    return "application/octet-stream";
}

static bool add(struct MHD_Response *r, const char *name, const char *value)
{
    return MHD_add_response_header(r, name, value) == MHD_YES;
}

static int queue(struct MHD_Connection *c, int status, struct MHD_Response *resp)
{
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc == MHD_YES ? status : 0;
}

/* payi's error shape: {"error":{"code","message"}}. */
static int answer_error(struct MHD_Connection *c, const payi_err *e)
{
    buf out = BUF_INIT;
    buf_puts(&out, "{\"error\":{\"code\":\"");
    buf_puts(&out, payi_code_word(e->code));
    buf_puts(&out, "\",\"message\":");
    json_put_string(&out, e->msg, strlen(e->msg));
    buf_puts(&out, "}}");
    struct MHD_Response *resp = MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_COPY);
    buf_release(&out);
    if (!resp)
        return 0;
    if (!add(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") ||
        !add(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache")) {
        MHD_destroy_response(resp);
        return 0;
    }
    return queue(c, payi_code_http(e->code), resp);
}

static int not_found(struct MHD_Connection *c, const char *url, size_t len)
{
    payi_err e;
    buf shown = BUF_INIT;   /* the path as text: a NUL would cut the message */
    for (size_t i = 0; i < len && i < 200; i++)
        buf_putc(&shown, url[i] ? url[i] : '?');
    payi_err_set(&e, PAYI_NOT_FOUND, NULL, "no such resource: %s", shown.data ? shown.data : "");
    buf_release(&shown);
    return answer_error(c, &e);
}

/* ---------------------------------------------------------------- paths */

/* The path relative to the root ("index.html" for "/"), or NULL when the
 * path's form is refused (gate 1). */
static const char *check_path(const char *url, size_t len, char *rel, size_t rel_size)
{
    if (len == 1 && url[0] == '/') {
        snprintf(rel, rel_size, "index.html");
        return rel;
    }
    if (len < 2 || url[0] != '/' || len >= STATIC_PATH_MAX || len >= rel_size || memchr(url, '\0', len) ||
        memchr(url, '\\', len))
        return NULL;
    for (size_t i = 1; i < len;) {   /* each segment: non-empty, not starting with '.' */
        if (url[i] == '/' || url[i] == '.')
            return NULL;
        const char *slash = memchr(url + i, '/', len - i);
        if (!slash)
            break;
        i = (size_t)(slash - url) + 1;
        if (i == len)
            return NULL;   /* a trailing slash names a directory */
    }
    memcpy(rel, url + 1, len - 1);
    rel[len - 1] = '\0';
    return rel;
}

static void http_date(time_t t, char *out, size_t size)
{
    struct tm tm;
    static const char *const day[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    gmtime_r(&t, &tm);
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", day[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Does an If-None-Match list hold etag (or "*")?  Weak validators compare
 * equal to strong ones (RFC 9110 13.1.2: the weak comparison). */
static bool etag_matches(const char *list, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (!strncmp(p, etag, n) && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

/* Not modified since the client's copy? */
static bool fresh(struct MHD_Connection *c, const char *etag, time_t mtime)
{
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm)
        return etag_matches(inm, etag);
    const char *ims = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MODIFIED_SINCE);
    struct tm tm = {0};
    if (!ims || !strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm))
        return false;
    return mtime <= timegm(&tm);
}

static bool add_common(struct MHD_Response *r, const char *type, const char *etag, const char *modified,
                       bool html)
{
    return add(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) && add(r, MHD_HTTP_HEADER_ETAG, etag) &&
           add(r, MHD_HTTP_HEADER_LAST_MODIFIED, modified) && add(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") &&
           add(r, "X-Content-Type-Options", "nosniff") &&
           (!html ||
            (add(r, "Content-Security-Policy",
                 "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                 "form-action 'none'; frame-ancestors 'none'") &&
             add(r, "Referrer-Policy", "no-referrer")));
}

int static_answer(struct MHD_Connection *c, const char *url, size_t len)
{
    char rel[STATIC_PATH_MAX], root[PATH_MAX], want[PATH_MAX * 2], real[PATH_MAX];
    payi_err e;
    if (!check_path(url, len, rel, sizeof rel))
        return not_found(c, url, len);
    const char *configured = static_root();
    if (!realpath(configured, root)) {
        payi_err_set(&e, PAYI_NOT_FOUND, NULL,
                     "the dashboard is not built: no directory %.300s (run `make web`, or set " STATIC_ENV
                     " to the built files)",
                     configured);
        return answer_error(c, &e);
    }
    snprintf(want, sizeof want, "%s/%s", root, rel);
    size_t rlen = strlen(root);
    if (!realpath(want, real) || strncmp(real, root, rlen) != 0 || (real[rlen] != '/' && rlen > 1))
        return not_found(c, url, len);   /* gate 3: missing, or a symlink out of the root */
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (fd >= 0 || err == ENOENT || err == ENOTDIR || err == ELOOP || err == EACCES)
            return not_found(c, url, len);
        payi_err_sys(&e, PAYI_IO, err, "cannot open %.200s", rel);
        return answer_error(c, &e);
    }
    char etag[64], modified[40];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_ino,
             (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec);
    http_date(st.st_mtim.tv_sec, modified, sizeof modified);
    const char *type = content_type(rel);
    bool html = !strncmp(type, "text/html", 9);
    struct MHD_Response *resp;
    int status = MHD_HTTP_OK;
    if (fresh(c, etag, st.st_mtim.tv_sec)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = MHD_create_response_from_fd((size_t)st.st_size, fd);   /* owns fd from here, */
        if (!resp)
            close(fd);                                                 /* unless it failed */
    }
    if (!resp)
        return 0;
    if (!add_common(resp, type, etag, modified, html)) {
        MHD_destroy_response(resp);
        return 0;
    }
    return queue(c, status, resp);
}
