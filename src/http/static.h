/* static.h — the dashboard's built files (web/dist), served by payi at / and /assets/.
 *
 * The files are read from a directory at request time, not embedded in the
 * binary: `make all` needs no Node.js, `make web` (scripts/web.sh) rebuilds
 * the dashboard without relinking payi, and a running server picks up the
 * new files at the next request.
 *
 * The directory is, first found:
 *   1. the one given to static_set_root (a future `payi serve --web DIR`);
 *   2. $PAYI_WEB when set and not empty;
 *   3. web/dist of the repository the binary was built in: the directory of
 *      /proc/self/exe, one level up (build/payi and build-san/payi ->
 *      REPO/web/dist).
 *
 * Requests (url is the path as decoded by http.c, len bytes, may hold a NUL):
 *   "/"            -> ROOT/index.html
 *   "/assets/F..." -> ROOT/assets/F...
 * answered with the file's Content-Type, ETag and Last-Modified (304 on a
 * matching If-None-Match, or If-Modified-Since without it), Cache-Control:
 * no-cache (the names carry no hash: the browser revalidates, cheaply), and
 * X-Content-Type-Options: nosniff; index.html also gets a
 * Content-Security-Policy that allows only the server's own origin.  HEAD is
 * answered by libmicrohttpd from the same response, without the body.
 *
 * Refused with 404 not_found in payi's JSON error shape (never a file
 * outside the root): a missing file, a directory, a segment that starts with
 * '.' (which covers "..", "%2e%2e" and hidden files), an empty segment
 * ("//"), a backslash or a NUL, and any path whose real path (symlinks
 * resolved) leaves the root.  A missing root answers 404 naming the
 * directory and `make web`.
 *
 * Thread-safe: the root is resolved once; every request opens its own file.
 */
#ifndef PAYI_HTTP_STATIC_H
#define PAYI_HTTP_STATIC_H

#include <microhttpd.h>
#include <stddef.h>

/* Serve the dashboard from dir (copied); call before the server starts.
 * NULL or "" goes back to $PAYI_WEB / the binary's repository. */
void static_set_root(const char *dir);

/* The directory requests are served from, as configured (it may not exist);
 * static storage, valid until the next static_set_root. */
const char *static_root(void);

/* Queue on c the answer to GET or HEAD of url[0..len).  Returns the HTTP
 * status queued (200, 304, 404, 500), or 0 when libmicrohttpd could not
 * queue it (the connection is then closed, as for any MHD_NO). */
int static_answer(struct MHD_Connection *c, const char *url, size_t len);

#endif
