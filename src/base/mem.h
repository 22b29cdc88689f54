/* mem.h — the one allocation wrapper.
 *
 * Out-of-memory policy: payi does not try to limp on without memory.  Every
 * allocation goes through these functions, which print a message naming the
 * size and abort.  Durable state is never left half-written by this: the log
 * acknowledges nothing that is not already on disk, and recovery handles the
 * rest.  Callers therefore never check these for NULL.
 */
#ifndef PAYI_MEM_H
#define PAYI_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow an array of elem-sized items to hold at least need items; *cap is updated. */
void *xgrow(void *p, size_t *cap, size_t need, size_t elem);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
