/* csv.h — a streaming RFC 4180 CSV reader.
 *
 *   csv_reader *r;
 *   if (csv_open_path(&r, "cases.csv", NULL, &err) != PAYI_OK) ...
 *   csv_row row;
 *   int rc;
 *   while ((rc = csv_next(r, &row, &err)) > 0)
 *       for (size_t i = 0; i < row.n; i++)
 *           use(row.f[i].p, row.f[i].len);        // not NUL-terminated
 *   if (rc < 0) fprintf(stderr, "%s\n", err.msg);  // "cases.csv:7:12: ..."
 *   csv_close(r);
 *
 * What is accepted (the rules are spelled out in csv.c's design comment):
 * fields separated by ',', rows ended by CRLF or LF or the end of input;
 * quoted fields with "" for a quote and embedded ',', CR and LF; a UTF-8 BOM at
 * the very start is skipped; lines holding nothing are skipped.  Anything else
 * (an unterminated quote, a character after a closing quote, a quote inside an
 * unquoted field, a CR not followed by LF, a ragged row when a width is asked
 * for, a row over the size limits) is an error whose message starts with
 * "NAME:LINE:COLUMN: " — line and column 1-based, the column counted in bytes
 * from the start of the line (a BOM is not counted).
 *
 * Memory is bounded: the reader holds at most one row (max_row bytes) plus
 * the unread part of the current chunk.
 *
 * Lifetime: a row's field pointers point into the input (memory source) or
 * the reader's buffer, or into the reader's scratch for fields that held ""
 * escapes; they stay valid until the next csv_next or csv_close.
 */
#ifndef PAYI_CSV_H
#define PAYI_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

/* Zero in any member means its default. */
typedef struct csv_options {
    size_t max_row;      /* bytes of one row, its line ending included (default 1 MiB) */
    size_t max_field;    /* bytes of one field as written, quotes included (default: max_row) */
    size_t max_fields;   /* fields in one row (default 65536) */
    size_t chunk;        /* first buffer size for stream sources (default 256 KiB) */
    size_t width;        /* every row must have exactly this many fields; 0: any,
                            CSV_WIDTH_FIRST: as many as the first row */
} csv_options;

#define CSV_WIDTH_FIRST SIZE_MAX

typedef struct csv_field {
    const char *p;       /* the value: quotes removed, "" turned into " */
    size_t len;
    uint64_t at;         /* byte offset in the input of the field's first byte
                            (its opening quote if quoted), for csv_fail */
    bool quoted;
} csv_field;

typedef struct csv_row {
    const csv_field *f;
    size_t n;            /* >= 1 */
    uint64_t line;       /* line of the row's first byte */
    uint64_t at;         /* byte offset of the row's first byte */
} csv_row;

typedef struct csv_reader csv_reader;

/* A pull source: fill dst with up to cap bytes; return how many (> 0), 0 at
 * the end of input, or -1 with errno set on a read error.  Short reads are
 * fine: the reader calls again. */
typedef ptrdiff_t (*csv_read_fn)(void *ctx, char *dst, size_t cap);

/* name is used in error messages only (copied).  opt may be NULL. */
payi_code csv_open_path(csv_reader **out, const char *path, const csv_options *opt, payi_err *err);
/* f is borrowed: csv_close does not close it (a pipe from popen works). */
csv_reader *csv_open_file(FILE *f, const char *name, const csv_options *opt);
/* data is borrowed and must outlive the reader; nothing is copied. */
csv_reader *csv_open_mem(const char *data, size_t len, const char *name, const csv_options *opt);
csv_reader *csv_open_fn(csv_read_fn fn, void *ctx, const char *name, const csv_options *opt);
void csv_close(csv_reader *r);   /* NULL is fine */

/* The next row: 1 with *row filled, 0 at the end of input, -1 on an error
 * described in *err (PAYI_VALIDATION for malformed CSV, PAYI_TOO_LARGE for a
 * limit, PAYI_IO for a read error).  Errors are sticky: every later call
 * returns the same one. */
int csv_next(csv_reader *r, csv_row *row, payi_err *err);

/* Sets the width every following row must have (0: any). */
void csv_set_width(csv_reader *r, size_t width);

const char *csv_name(const csv_reader *r);
/* Bytes consumed so far (including a BOM), for progress reports. */
uint64_t csv_offset(const csv_reader *r);

/* Line and column of byte offset `at`, which must lie in the row returned
 * last (from its first byte up to just past its last field). */
void csv_where(const csv_reader *r, uint64_t at, uint64_t *line, uint64_t *col);

/* For callers that find a field's content wrong: fills err with code and
 * "NAME:LINE:COL: " + the formatted message, where LINE:COL is byte offset
 * `at` of the last row (see csv_where); returns code. */
payi_code csv_fail(const csv_reader *r, payi_err *err, payi_code code, uint64_t at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Where the last csv_next error was found (0, 0 when there was none). */
void csv_error_where(const csv_reader *r, uint64_t *line, uint64_t *col);

#endif
