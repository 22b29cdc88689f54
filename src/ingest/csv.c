/* csv.c — a streaming RFC 4180 CSV reader.
 *
 * FORMAT (RFC 4180, with the usual real-world line endings)
 *
 *   name,"Korea, South","say ""hi""",       <- row 1: 4 fields, the last empty
 *   x,"two\n lines",3\r\n                    <- row 2 spans lines 2 and 3
 *   last,row,without,newline<EOF>
 *
 *   1. Fields are separated by ','; a row ends at LF, CRLF or the end of input.
 *      A final line without a line ending is a row like any other.
 *   2. A field that starts with '"' is quoted: it ends at the next '"' that is
 *      not doubled; "" inside stands for one '"'; ',', CR and LF inside are
 *      data (kept byte for byte: a CRLF inside quotes stays CRLF).
 *   3. After a closing quote only ',', a line ending or the end of input may
 *      follow; anything else is an error ("a"b).  A '"' inside an unquoted
 *      field is an error too (a"b): RFC 4180 forbids both, and accepting them
 *      silently is how a missing quote turns into a shifted column.
 *   4. A CR must be followed by LF (or be the last byte of input) outside
 *      quotes: a bare CR is an error, not a third kind of line ending.
 *   5. Lines holding nothing (LF or CRLF alone) are skipped; they still count
 *      as lines for positions.  A row therefore always has at least 1 field;
 *      a one-column file writes an empty value as "".
 *   6. A UTF-8 BOM (EF BB BF) as the first 3 bytes is skipped.  No other
 *      decoding happens: fields are bytes.
 *
 * POSITIONS.  Lines are counted from 1 and advance at every LF, including LFs
 * inside quoted fields.  Columns are 1-based byte offsets from the start of
 * the line; the BOM is not counted.  A row always starts at a line start, so
 * a position inside the current row is found by counting LFs from the row's
 * first byte (csv_where); the parser itself only counts the LFs of each row.
 *
 * BUFFERING.  The reader looks at a window of input, data[0, len), whose
 * first byte is at input offset `base`.  For a memory source the window is
 * the caller's whole buffer (nothing is copied, eof is true from the start).
 * For stream sources (FILE*, read callback) the window is our own buffer:
 *
 *   buf: [ consumed rows | current row ... | free ]
 *                          ^pos             ^len   ^cap
 *
 * When a row runs past len before the input ends, the current row is moved
 * to the front, the rest of the buffer is filled, and the row is parsed again
 * from its first byte (parse state is never saved across refills, so there
 * is one parser and it is simple; a row is re-scanned at most a few times
 * because the buffer doubles when a single row fills it).
 *
 * INVARIANTS
 *   I1. pos is always at a row start (a line start); `line` is its line.
 *   I2. The parser never reads beyond data[lim): lim = min(len, pos + max_row),
 *       so a row longer than max_row is found without reading more of it, and
 *       the buffer never grows past max_row + 1 bytes.
 *   I3. Field values point into data or into the scratch buffer (fields that
 *       held "" escapes, unescaped there); both stay put until the next
 *       csv_next, which is the lifetime promised in csv.h.
 *   I4. Once an error is returned, the reader only returns that error.
 */
#include "ingest/csv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

#define CSV_DEF_MAX_ROW (1u << 20)
#define CSV_DEF_MAX_FIELDS 65536u
#define CSV_DEF_CHUNK (256u << 10)

/* A field that held "" escapes: its value is in scratch, which may still
 * move while the row is parsed, so its pointer is set when the row is done. */
typedef struct esc_field {
    size_t index;      /* into fields */
    size_t off;        /* into scratch */
} esc_field;

struct csv_reader {
    char *name;
    /* the source */
    csv_read_fn fn;
    void *ctx;
    FILE *own_file;                /* opened by csv_open_path, closed by csv_close */
    /* the window (see BUFFERING) */
    const char *data;
    size_t len, pos;
    uint64_t base;
    bool eof;
    char *buf;                     /* owned window of stream sources */
    size_t cap;
    bool started;                  /* BOM looked for */
    uint64_t line;                 /* line of data[pos] (I1) */
    size_t row_pos;                /* first byte of the row parsed last */
    uint64_t row_line;
    csv_options opt;
    size_t width;                  /* 0: any */
    bool width_first;              /* take width from the first row */
    csv_field *fields;       /* the row being parsed, then returned */
    size_t fields_cap;
    esc_field *esc;
    size_t nesc, esc_cap;
    buf scratch;
    /* the sticky error (I4) */
    bool failed;
    payi_err error;
    uint64_t err_line, err_col;
};

enum { ROW_DONE, ROW_BLANK, ROW_END, ROW_MORE, ROW_ERROR };

/* Bytes that end an unquoted field, or are not allowed in one. */
static const unsigned char stop[256] = {[','] = 1, ['\n'] = 1, ['\r'] = 1, ['"'] = 1};

/* ---- opening and closing ---- */

static void set_options(csv_reader *r, const csv_options *opt)
{
    if (opt)
        r->opt = *opt;
    if (!r->opt.max_row)
        r->opt.max_row = CSV_DEF_MAX_ROW;
    if (!r->opt.max_field)
        r->opt.max_field = r->opt.max_row;
    if (!r->opt.max_fields)
        r->opt.max_fields = CSV_DEF_MAX_FIELDS;
    if (!r->opt.chunk)
        r->opt.chunk = CSV_DEF_CHUNK;
    if (r->opt.chunk < 4)   /* the first fill must hold a whole BOM */
        r->opt.chunk = 4;
    csv_set_width(r, r->opt.width);
}

static csv_reader *reader_new(const char *name, const csv_options *opt)
{
    csv_reader *r = xcalloc(1, sizeof *r);
    r->name = xstrdup(name ? name : "<csv>");
    r->line = 1;
    r->row_line = 1;
    set_options(r, opt);
    return r;
}

static ptrdiff_t file_read(void *ctx, char *dst, size_t cap)
{
    FILE *f = ctx;
    errno = 0;
    size_t n = fread(dst, 1, cap, f);
    if (n > 0)
        return (ptrdiff_t)n;
    if (ferror(f)) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    return 0;
}

csv_reader *csv_open_fn(csv_read_fn fn, void *ctx, const char *name, const csv_options *opt)
{
    csv_reader *r = reader_new(name, opt);
    r->fn = fn;
    r->ctx = ctx;
    r->cap = r->opt.chunk;
    r->buf = xmalloc(r->cap);
    r->data = r->buf;
    return r;
}

csv_reader *csv_open_file(FILE *f, const char *name, const csv_options *opt)
{
    return csv_open_fn(file_read, f, name, opt);
}

payi_code csv_open_path(csv_reader **out, const char *path, const csv_options *opt, payi_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return payi_err_sys(err, errno == ENOENT ? PAYI_NOT_FOUND : PAYI_IO, errno, "cannot open %s", path);
    csv_reader *r = csv_open_file(f, path, opt);
    r->own_file = f;
    *out = r;
    return PAYI_OK;
}

csv_reader *csv_open_mem(const char *data, size_t len, const char *name, const csv_options *opt)
{
    csv_reader *r = reader_new(name, opt);
    r->data = data ? data : "";
    r->len = data ? len : 0;
    r->eof = true;
    return r;
}

void csv_close(csv_reader *r)
{
    if (!r)
        return;
    if (r->own_file)
        fclose(r->own_file);
    free(r->buf);
    free(r->fields);
    free(r->esc);
    buf_release(&r->scratch);
    free(r->name);
    free(r);
}

void csv_set_width(csv_reader *r, size_t width)
{
    r->width_first = width == CSV_WIDTH_FIRST;
    r->width = r->width_first ? 0 : width;
}

const char *csv_name(const csv_reader *r) { return r->name; }

uint64_t csv_offset(const csv_reader *r) { return r->base + r->pos; }

/* ---- positions and errors ---- */

void csv_where(const csv_reader *r, uint64_t at, uint64_t *line, uint64_t *col)
{
    size_t end = at < r->base ? 0 : (size_t)(at - r->base);
    if (end > r->len)
        end = r->len;
    if (end < r->row_pos)
        end = r->row_pos;
    uint64_t ln = r->row_line;
    size_t line_start = r->row_pos;
    for (size_t i = r->row_pos; i < end; i++)
        if (r->data[i] == '\n') {
            ln++;
            line_start = i + 1;
        }
    *line = ln;
    *col = end - line_start + 1;
}

/* Formats "NAME:LINE:COL: message" for offset `at` into err; the position
 * found is also returned in *line, *col. */
__attribute__((format(printf, 7, 0))) static payi_code vfail(const csv_reader *r, payi_err *err, payi_code code,
                                                             uint64_t at, uint64_t *line, uint64_t *col,
                                                             const char *fmt, va_list ap)
{
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    csv_where(r, at, line, col);
    return payi_err_set(err, code, NULL, "%s:%llu:%llu: %s", r->name, (unsigned long long)*line,
                        (unsigned long long)*col, msg);
}

payi_code csv_fail(const csv_reader *r, payi_err *err, payi_code code, uint64_t at, const char *fmt, ...)
{
    uint64_t line, col;
    va_list ap;
    va_start(ap, fmt);
    vfail(r, err, code, at, &line, &col, fmt, ap);
    va_end(ap);
    return code;
}

/* Records the sticky error (I4) and copies it to err. */
__attribute__((format(printf, 5, 6))) static int fail(csv_reader *r, payi_err *err, payi_code code, size_t pos,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r, &r->error, code, r->base + pos, &r->err_line, &r->err_col, fmt, ap);
    va_end(ap);
    r->failed = true;
    if (err)
        *err = r->error;
    return ROW_ERROR;
}

void csv_error_where(const csv_reader *r, uint64_t *line, uint64_t *col)
{
    *line = r->failed ? r->err_line : 0;
    *col = r->failed ? r->err_col : 0;
}

/* A printable rendering of byte c for messages. */
static const char *show_byte(unsigned char c, char out[16])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(out, 16, "'%c'", c);
    else
        snprintf(out, 16, "byte 0x%02X", c);
    return out;
}

/* ---- the parser ---- */

/* The row (starting at r->pos) reached lim before its end and lim is not the
 * end of input: either the row is over max_row, or more input is needed.
 * quote_at is the opening quote of the field being read, or SIZE_MAX. */
static int short_input(csv_reader *r, bool capped, size_t quote_at, payi_err *err)
{
    if (!capped)
        return ROW_MORE;
    if (quote_at != SIZE_MAX) {
        uint64_t ql, qc;
        csv_where(r, r->base + quote_at, &ql, &qc);
        return fail(r, err, PAYI_TOO_LARGE, r->pos,
                    "row is longer than the limit of %zu bytes, inside the quoted field opened at line %llu "
                    "column %llu (is a closing quote missing?)",
                    r->opt.max_row, (unsigned long long)ql, (unsigned long long)qc);
    }
    return fail(r, err, PAYI_TOO_LARGE, r->pos, "row is longer than the limit of %zu bytes", r->opt.max_row);
}

static size_t count_lf(const char *p, size_t n)
{
    size_t k = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/* A quoted field starting at data[*pp] == '"', to be fields[index].  On
 * ROW_DONE, *pp is just past the closing quote and *f holds the value; a
 * value that held "" is unescaped into scratch and listed in r->esc. */
static int quoted_field(csv_reader *r, size_t *pp, size_t lim, bool capped, csv_field *f, size_t index,
                        uint64_t *lines, payi_err *err)
{
    const char *d = r->data;
    size_t open = *pp, seg = open + 1, q = open + 1, esc_off = SIZE_MAX;
    bool final = !capped && r->eof;
    for (;;) {
        const char *h = memchr(d + q, '"', lim - q);
        size_t e = h ? (size_t)(h - d) : lim;
        *lines += count_lf(d + q, e - q);
        if (!h) {
            if (!final)
                return short_input(r, capped, open, err);
            uint64_t el, ec;
            csv_where(r, r->base + lim, &el, &ec);
            return fail(r, err, PAYI_VALIDATION, open,
                        "quoted field is never closed (the input ends at line %llu column %llu)",
                        (unsigned long long)el, (unsigned long long)ec);
        }
        if (e + 1 == lim && !final)   /* "" or a closing quote? the next byte says */
            return short_input(r, capped, open, err);
        if (e + 1 < lim && d[e + 1] == '"') {   /* "" : one quote, keep going */
            if (esc_off == SIZE_MAX)
                esc_off = r->scratch.len;
            buf_put(&r->scratch, d + seg, e + 1 - seg);
            q = seg = e + 2;
            continue;
        }
        /* the closing quote is at e */
        f->quoted = true;
        if (esc_off != SIZE_MAX) {
            buf_put(&r->scratch, d + seg, e - seg);
            f->p = NULL;   /* set in fill_row (I3) */
            f->len = r->scratch.len - esc_off;
            if (r->nesc == r->esc_cap)
                r->esc = xgrow(r->esc, &r->esc_cap, r->nesc + 1, sizeof *r->esc);
            r->esc[r->nesc++] = (esc_field){index, esc_off};
        } else {
            f->p = d + open + 1;
            f->len = e - (open + 1);
        }
        *pp = e + 1;
        return ROW_DONE;
    }
}

/* A line holding nothing, at data[p] (LF or CR).  Rule 5. */
static int blank_line(csv_reader *r, size_t p, size_t lim, bool capped, payi_err *err)
{
    const char *d = r->data;
    if (d[p] == '\n') {
        r->pos = p + 1;
        r->line++;
        return ROW_BLANK;
    }
    if (p + 1 == lim) {
        if (capped || !r->eof)
            return short_input(r, capped, SIZE_MAX, err);
        r->pos = p + 1;   /* a CR as the last byte of input */
        return ROW_BLANK;
    }
    if (d[p + 1] == '\n') {
        r->pos = p + 2;
        r->line++;
        return ROW_BLANK;
    }
    return fail(r, err, PAYI_VALIDATION, p, "carriage return not followed by a line feed");
}

/* Rule: a row has `width` fields when one is asked for. */
static int check_width(csv_reader *r, size_t nf, size_t last_end, payi_err *err)
{
    if (r->width_first) {
        r->width = nf;
        r->width_first = false;
        return ROW_DONE;
    }
    if (!r->width || nf == r->width)
        return ROW_DONE;
    if (nf > r->width)
        return fail(r, err, PAYI_VALIDATION, (size_t)(r->fields[r->width].at - r->base),
                    "row has %zu fields, expected %zu", nf, r->width);
    return fail(r, err, PAYI_VALIDATION, last_end, "row has %zu fields, expected %zu", nf, r->width);
}

/* Parses the row at r->pos.  ROW_DONE: r->fields holds its fields and r->pos,
 * r->line are past it.  ROW_MORE: nothing changed, read more and call again. */
static int parse_row(csv_reader *r, size_t *nfields, payi_err *err)
{
    const char *d = r->data;
    size_t p = r->pos, lim = r->len;
    bool capped = false;
    if (lim - p > r->opt.max_row) {   /* I2 */
        lim = p + r->opt.max_row;
        capped = true;
    }
    bool final = !capped && r->eof;   /* lim is the end of input */
    r->row_pos = p;
    r->row_line = r->line;
    if (p == lim)
        return final ? ROW_END : short_input(r, capped, SIZE_MAX, err);
    if (d[p] == '\n' || d[p] == '\r')
        return blank_line(r, p, lim, capped, err);

    size_t nf = 0, last_end = p;
    uint64_t lines = 0;
    r->scratch.len = 0;
    r->nesc = 0;
    for (;;) {
        size_t start = p;
        if (nf == r->opt.max_fields)
            return fail(r, err, PAYI_TOO_LARGE, start, "row has more than the limit of %zu fields",
                        r->opt.max_fields);
        if (nf == r->fields_cap)
            r->fields = xgrow(r->fields, &r->fields_cap, nf + 1, sizeof *r->fields);
        csv_field *f = &r->fields[nf];
        f->at = r->base + p;
        if (p < lim && d[p] == '"') {
            int st = quoted_field(r, &p, lim, capped, f, nf, &lines, err);
            if (st != ROW_DONE)
                return st;
        } else {
            while (p < lim && !stop[(unsigned char)d[p]])
                p++;
            if (p < lim && d[p] == '"')
                return fail(r, err, PAYI_VALIDATION, p,
                            "double quote inside an unquoted field (quote the whole field and write \"\" for \")");
            f->p = d + start;
            f->len = p - start;
            f->quoted = false;
        }
        if (p - start > r->opt.max_field)
            return fail(r, err, PAYI_TOO_LARGE, start, "field is longer than the limit of %zu bytes",
                        r->opt.max_field);
        nf++;
        last_end = p;

        if (p == lim) {
            if (!final)
                return short_input(r, capped, SIZE_MAX, err);
            break;   /* rule 1: the end of input ends the row */
        }
        char c = d[p];
        if (c == ',') {
            p++;
            continue;
        }
        if (c == '\n') {
            p++;
            lines++;
            break;
        }
        if (c == '\r') {
            if (p + 1 == lim) {
                if (!final)
                    return short_input(r, capped, SIZE_MAX, err);
                p++;
                break;
            }
            if (d[p + 1] != '\n')
                return fail(r, err, PAYI_VALIDATION, p, "carriage return not followed by a line feed");
            p += 2;
            lines++;
            break;
        }
        char shown[16];
        return fail(r, err, PAYI_VALIDATION, p, "unexpected %s after the closing quote of a field",
                    show_byte((unsigned char)c, shown));
    }
    int st = check_width(r, nf, last_end, err);
    if (st != ROW_DONE)
        return st;
    r->pos = p;
    r->line += lines;
    *nfields = nf;
    return ROW_DONE;
}

/* ---- the driver ---- */

/* Moves the current row to the front of the buffer, grows the buffer if the
 * row fills it, and reads until the buffer is full or the input ends. */
static int refill(csv_reader *r, payi_err *err)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->base += r->pos;
        r->len -= r->pos;
        r->row_pos = 0;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        /* Not capped (I2), so cap <= max_row and doubling up to max_row + 1 grows it. */
        size_t ncap = r->cap > SIZE_MAX / 2 ? SIZE_MAX : r->cap * 2;
        if (ncap > r->opt.max_row + 1)
            ncap = r->opt.max_row + 1;
        r->buf = xrealloc(r->buf, ncap);
        r->cap = ncap;
        r->data = r->buf;
    }
    while (r->len < r->cap) {
        ptrdiff_t n = r->fn(r->ctx, r->buf + r->len, r->cap - r->len);
        if (n < 0) {
            payi_err_sys(&r->error, PAYI_IO, errno, "%s: read failed at byte %llu", r->name,
                         (unsigned long long)(r->base + r->len));
            r->failed = true;
            if (err)
                *err = r->error;
            return ROW_ERROR;
        }
        if (n == 0) {
            r->eof = true;
            break;
        }
        r->len += (size_t)n;
    }
    return ROW_DONE;
}

/* Rule 6: skips a UTF-8 BOM at the start of input. */
static int skip_bom(csv_reader *r, payi_err *err)
{
    r->started = true;
    /* refill reads until the buffer (>= 4 bytes) is full or the input ends */
    if (!r->eof && r->len - r->pos < 3 && refill(r, err) == ROW_ERROR)
        return ROW_ERROR;
    if (r->len - r->pos >= 3 && memcmp(r->data + r->pos, "\xEF\xBB\xBF", 3) == 0)
        r->pos += 3;
    return ROW_DONE;
}

static void fill_row(csv_reader *r, size_t nf, csv_row *row)
{
    for (size_t i = 0; i < r->nesc; i++)
        r->fields[r->esc[i].index].p = r->scratch.data + r->esc[i].off;
    row->f = r->fields;
    row->n = nf;
    row->line = r->row_line;
    row->at = r->base + r->row_pos;
}

int csv_next(csv_reader *r, csv_row *row, payi_err *err)
{
    if (r->failed) {
        if (err)
            *err = r->error;
        return -1;
    }
    if (!r->started && skip_bom(r, err) == ROW_ERROR)
        return -1;
    for (;;) {
        size_t nf = 0;
        switch (parse_row(r, &nf, err)) {
        case ROW_DONE:
            fill_row(r, nf, row);
            return 1;
        case ROW_BLANK:
            break;
        case ROW_END:
            row->f = NULL;
            row->n = 0;
            return 0;
        case ROW_MORE:
            if (refill(r, err) == ROW_ERROR)
                return -1;
            break;
        default:
            return -1;
        }
    }
}
