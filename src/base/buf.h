/* buf.h — a growable byte buffer, always NUL-terminated after len bytes.
 * The buffer owns data; buf_release frees it and leaves an empty buffer. */
#ifndef PAYI_BUF_H
#define PAYI_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

#define BUF_INIT {NULL, 0, 0}

void buf_reserve(buf *b, size_t extra);   /* room for extra more bytes (+NUL) */
void buf_put(buf *b, const void *p, size_t n);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_put_u64(buf *b, uint64_t v);    /* decimal */
void buf_put_i64(buf *b, int64_t v);     /* decimal */
void buf_reset(buf *b);                   /* len = 0, keeps memory */
void buf_release(buf *b);                 /* frees memory */

#endif
