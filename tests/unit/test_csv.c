/* Tests for src/ingest/csv: a table of inputs with the rows (or the error,
 * with its line and column) they must give, each run through every source
 * (memory; a callback handing out 1, 2, 3, 5 and 64 bytes at a time, with a
 * tiny and a default buffer; a FILE*), which must all agree; then limits,
 * stickiness, csv_where/csv_fail, zero-copy, and a randomized round trip
 * through an RFC 4180 writer.
 *
 * Rows are rendered as "[f1][f2]\n" (a quoted field as "{f}") so that an
 * expected result is one readable string. */
#include <errno.h>
#include <stdlib.h>

#include "base/buf.h"
#include "ingest/csv.h"
#include "test.h"

/* ---- sources ---- */

typedef struct chunked {
    const char *data;
    size_t len, pos, step;
} chunked;

static ptrdiff_t chunked_read(void *ctx, char *dst, size_t cap)
{
    chunked *c = ctx;
    size_t n = c->len - c->pos;
    if (n > c->step)
        n = c->step;
    if (n > cap)
        n = cap;
    memcpy(dst, c->data + c->pos, n);
    c->pos += n;
    return (ptrdiff_t)n;
}

enum { SRC_MEM, SRC_FILE, SRC_STEP1, SRC_STEP2, SRC_STEP3, SRC_STEP5, SRC_STEP64, SRC_STEP3_DEFBUF, NSRC };
static const size_t src_step[NSRC] = {0, 0, 1, 2, 3, 5, 64, 3};

typedef struct source {
    csv_reader *r;
    chunked c;
    FILE *f;
} source;

/* Opens input through source kind k; stream sources get a 4-byte first
 * buffer (so that every row straddles refills) except SRC_STEP3_DEFBUF. */
static void src_open(source *s, int k, const char *data, size_t len, const csv_options *base)
{
    csv_options o = base ? *base : (csv_options){0};
    memset(s, 0, sizeof *s);
    if (k != SRC_STEP3_DEFBUF && k != SRC_MEM)
        o.chunk = 4;
    if (k == SRC_MEM) {
        s->r = csv_open_mem(data, len, "t.csv", &o);
    } else if (k == SRC_FILE) {
        s->f = tmpfile();
        fwrite(data, 1, len, s->f);
        rewind(s->f);
        s->r = csv_open_file(s->f, "t.csv", &o);
    } else {
        s->c = (chunked){data, len, 0, src_step[k]};
        s->r = csv_open_fn(chunked_read, &s->c, "t.csv", &o);
    }
}

static void src_close(source *s)
{
    csv_close(s->r);
    if (s->f)
        fclose(s->f);
}

/* All rows rendered, or the error as "ERR code L:C message". */
static void render(csv_reader *r, buf *out)
{
    csv_row row;
    payi_err err;
    int rc;
    while ((rc = csv_next(r, &row, &err)) > 0) {
        for (size_t i = 0; i < row.n; i++) {
            buf_putc(out, row.f[i].quoted ? '{' : '[');
            buf_put(out, row.f[i].p, row.f[i].len);
            buf_putc(out, row.f[i].quoted ? '}' : ']');
        }
        buf_putc(out, '\n');
    }
    if (rc < 0) {
        uint64_t line, col;
        csv_error_where(r, &line, &col);
        buf_printf(out, "ERR %s %llu:%llu %s", payi_code_word(err.code), (unsigned long long)line,
                   (unsigned long long)col, err.msg);
    }
}

/* Checks that every source gives `want` (for an error: want is a prefix of
 * the rendering, and the message contains `msg`). */
static void expect(int at_line, const char *input, size_t len, const csv_options *o, const char *want, const char *msg)
{
    for (int k = 0; k < NSRC; k++) {
        source s;
        buf out = BUF_INIT;
        src_open(&s, k, input, len, o);
        render(s.r, &out);
        const char *got = out.data ? out.data : "";
        bool ok = msg ? strncmp(got, want, strlen(want)) == 0 && strstr(got, msg) != NULL : strcmp(got, want) == 0;
        if (!ok)
            test_fail(__FILE__, at_line, "source %d: got\n%s\nwant\n%s%s%s", k, got, want, msg ? " ... " : "",
                      msg ? msg : "");
        buf_release(&out);
        src_close(&s);
    }
}

#define ROWS(input, want) expect(__LINE__, input, sizeof(input) - 1, NULL, want, NULL)
#define ROWS_OPT(input, opt, want) expect(__LINE__, input, sizeof(input) - 1, opt, want, NULL)
#define FAILS(input, opt, want, msg) expect(__LINE__, input, sizeof(input) - 1, opt, want, msg)

/* ---- well-formed input ---- */

TEST(csv_plain_rows)
{
    ROWS("a,b,c\n1,2,3\n", "[a][b][c]\n[1][2][3]\n");
    ROWS("a,b\r\n1,2\r\n", "[a][b]\n[1][2]\n");
    ROWS("a,b\r\n1,2\n3,4\r\n", "[a][b]\n[1][2]\n[3][4]\n");   /* mixed endings */
    ROWS("x", "[x]\n");
    ROWS("C\xC3\xB4te d'Ivoire,88263\n", "[C\xC3\xB4te d'Ivoire][88263]\n");   /* bytes pass through */
}

TEST(csv_last_line_without_newline)
{
    ROWS("a,b\n1,2", "[a][b]\n[1][2]\n");
    ROWS("a,b\r\n1,\"2\"", "[a][b]\n[1]{2}\n");
    ROWS("a,b\r", "[a][b]\n");   /* a CR as the last byte ends the line */
    ROWS("a,", "[a][]\n");
}

TEST(csv_empty_fields)
{
    ROWS(",,\n", "[][][]\n");
    ROWS("a,\n,b\n", "[a][]\n[][b]\n");
    ROWS("\"\"\n", "{}\n");   /* the way to write one empty value */
    ROWS("\"\",\"\"\r\n", "{}{}\n");
}

TEST(csv_quoted_fields)
{
    ROWS("\"Korea, South\",x\n", "{Korea, South}[x]\n");
    ROWS("\"say \"\"hi\"\"\",\"\"\"\"\n", "{say \"hi\"}{\"}\n");
    ROWS("\"\"\"a\"\"\"\"b\"\"\"\n", "{\"a\"\"b\"}\n");
    ROWS("\"two\nlines\",\"cr\r\nlf\"\r\nnext\n", "{two\nlines}{cr\r\nlf}\n[next]\n");
    ROWS("\",\",\"\n\"\n", "{,}{\n}\n");
}

TEST(csv_bom_and_blank_lines)
{
    ROWS("\xEF\xBB\xBF" "a,b\n", "[a][b]\n");
    ROWS("\xEF\xBB\xBF", "");
    ROWS("\xEF\xBB", "[\xEF\xBB]\n");                        /* not a BOM */
    ROWS("a\n\xEF\xBB\xBF" "b\n", "[a]\n[\xEF\xBB\xBF" "b]\n");   /* only at the very start */
    ROWS("", "");
    ROWS("\n", "");
    ROWS("\r\n\r\n", "");
    ROWS("\na\n\r\n\nb\n\n", "[a]\n[b]\n");
}

/* row.line, row.at and field offsets, through a multi-line field. */
TEST(csv_row_positions)
{
    static const char in[] = "\xEF\xBB\xBF" "h1,h2\n\n\"x\ny\",1\r\nz,\"q\"\n";
    for (int k = 0; k < NSRC; k++) {
        source s;
        src_open(&s, k, in, sizeof in - 1, NULL);
        csv_row row;
        payi_err err;
        uint64_t line, col;
        CHECK_EQ_INT(csv_next(s.r, &row, &err), 1);
        CHECK_EQ_U64(row.line, 1);
        CHECK_EQ_U64(row.at, 3);
        CHECK_EQ_U64(row.f[1].at, 6);
        csv_where(s.r, row.f[1].at, &line, &col);
        CHECK_EQ_U64(col, 4);   /* the BOM is not counted */
        CHECK_EQ_INT(csv_next(s.r, &row, &err), 1);
        CHECK_EQ_U64(row.line, 3);
        CHECK_EQ_U64(row.at, 10);
        csv_where(s.r, row.f[1].at, &line, &col);
        CHECK_EQ_U64(line, 4);
        CHECK_EQ_U64(col, 4);
        CHECK_EQ_INT(csv_next(s.r, &row, &err), 1);
        CHECK_EQ_U64(row.line, 5);
        csv_where(s.r, row.f[1].at, &line, &col);
        CHECK_EQ_U64(line, 5);
        CHECK_EQ_U64(col, 3);
        payi_code rc = csv_fail(s.r, &err, PAYI_VALIDATION, row.f[1].at, "bad %s", "q");
        CHECK_EQ_INT(rc, PAYI_VALIDATION);
        CHECK_STR(err.msg, "t.csv:5:3: bad q");
        CHECK_EQ_INT(csv_next(s.r, &row, &err), 0);
        CHECK_EQ_U64(csv_offset(s.r), sizeof in - 1);
        CHECK_EQ_INT(csv_next(s.r, &row, &err), 0);   /* the end stays the end */
        src_close(&s);
    }
}

/* ---- malformed input: the error and where ---- */

TEST(csv_error_unterminated_quote)
{
    FAILS("a,b\nc,\"de\nf\n", NULL, "[a][b]\nERR validation 2:3 t.csv:2:3: ",
          "quoted field is never closed (the input ends at line 4 column 1)");
    FAILS("\"", NULL, "ERR validation 1:1 ", "never closed");
    FAILS("\"ab\"\"", NULL, "ERR validation 1:1 ", "never closed");
}

TEST(csv_error_after_closing_quote)
{
    FAILS("a,\"b\"c\n", NULL, "ERR validation 1:6 t.csv:1:6: ", "unexpected 'c' after the closing quote");
    FAILS("\"b\" ,x\n", NULL, "ERR validation 1:4 ", "unexpected ' '");
    FAILS("\"b\"\x01\n", NULL, "ERR validation 1:4 ", "unexpected byte 0x01");
    FAILS("\"x\ny\",1\nz,\"q\"w\n", NULL, "{x\ny}[1]\nERR validation 3:6 ", "unexpected 'w'");
}

TEST(csv_error_quote_in_unquoted_field)
{
    FAILS("ab\"c\n", NULL, "ERR validation 1:3 ", "double quote inside an unquoted field");
    FAILS("\xEF\xBB\xBF" "a\"b", NULL, "ERR validation 1:2 ", "double quote");
}

TEST(csv_error_bare_cr)
{
    FAILS("a\rb\n", NULL, "ERR validation 1:2 ", "carriage return not followed by a line feed");
    FAILS("a\n\rb", NULL, "[a]\nERR validation 2:1 ", "carriage return");
    FAILS("\"a\"\rb", NULL, "ERR validation 1:4 ", "carriage return");
}

TEST(csv_error_ragged_rows)
{
    csv_options two = {.width = 2}, first = {.width = CSV_WIDTH_FIRST};
    ROWS_OPT("a,b\nc,d\n", &two, "[a][b]\n[c][d]\n");
    FAILS("a,b\nc\n", &two, "[a][b]\nERR validation 2:2 t.csv:2:2: ", "row has 1 fields, expected 2");
    FAILS("a,b\nc,d,e\n", &two, "[a][b]\nERR validation 2:5 ", "row has 3 fields, expected 2");
    FAILS("a,b,c\n1,2,3\n4,5\r\n", &first, "[a][b][c]\n[1][2][3]\nERR validation 3:4 ", "row has 2 fields, expected 3");
    FAILS("\"a\nb\",c\nd", &first, "{a\nb}[c]\nERR validation 3:2 ", "row has 1 fields, expected 2");
}

TEST(csv_error_limits)
{
    csv_options row8 = {.max_row = 8}, row16 = {.max_row = 16}, field3 = {.max_field = 3}, fields2 = {.max_fields = 2};
    ROWS_OPT("abc,def\n12345678", &row8, "[abc][def]\n[12345678]\n");   /* exactly 8 bytes is fine */
    FAILS("abc,def\nabcdefghij\n", &row8, "[abc][def]\nERR too_large 2:1 ", "row is longer than the limit of 8 bytes");
    FAILS("a,\"bbbbbbbbbbbbbbbbbbbbbbbbb", &row16, "ERR too_large 1:1 ",
          "inside the quoted field opened at line 1 column 3 (is a closing quote missing?)");
    FAILS("\n\nabcdefghijkl", &row8, "ERR too_large 3:1 ", "longer than the limit");
    ROWS_OPT("abc,\"a\"\n", &field3, "[abc]{a}\n");
    FAILS("abc,abcd\n", &field3, "ERR too_large 1:5 ", "field is longer than the limit of 3 bytes");
    FAILS("\"ab\"\n", &field3, "ERR too_large 1:1 ", "field is longer");   /* quotes count */
    ROWS_OPT("a,b\n", &fields2, "[a][b]\n");
    FAILS("a,b\nc,d,e\n", &fields2, "[a][b]\nERR too_large 2:5 ", "more than the limit of 2 fields");
}

/* A long row through a 4-byte first buffer: the buffer grows, and stays
 * bounded by max_row. */
TEST(csv_long_rows_grow_the_buffer)
{
    buf in = BUF_INIT, want = BUF_INIT;
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 2000; i++) {
            buf_printf(&in, "%s%d", i ? "," : "", i * r);
            buf_printf(&want, "[%d]", i * r);
        }
        buf_puts(&in, r == 1 ? "\r\n" : "\n");
        buf_putc(&want, '\n');
    }
    expect(__LINE__, in.data, in.len, NULL, want.data, NULL);
    csv_options small = {.max_row = 5000};   /* row 1 is 4000 bytes, row 2 more */
    buf first = BUF_INIT;
    buf_put(&first, want.data, (size_t)(strchr(want.data, '\n') + 1 - want.data));
    buf_puts(&first, "ERR too_large 2:1 ");
    expect(__LINE__, in.data, in.len, &small, first.data, "longer than the limit of 5000 bytes");
    buf_release(&first);
    buf_release(&in);
    buf_release(&want);
}

TEST(csv_errors_are_sticky)
{
    static const char in[] = "a\n\"b\"x\nc\n";
    csv_reader *r = csv_open_mem(in, sizeof in - 1, "s.csv", NULL);
    csv_row row;
    payi_err err, again;
    CHECK_EQ_INT(csv_next(r, &row, &err), 1);
    CHECK_EQ_INT(csv_next(r, &row, &err), -1);
    CHECK_EQ_INT(csv_next(r, &row, &again), -1);
    CHECK_EQ_INT(again.code, PAYI_VALIDATION);
    CHECK_STR(again.msg, err.msg);
    CHECK(strncmp(err.msg, "s.csv:2:4: ", 11) == 0);
    CHECK_EQ_INT(csv_next(r, &row, NULL), -1);   /* err may be NULL */
    csv_close(r);
}

static ptrdiff_t failing_read(void *ctx, char *dst, size_t cap)
{
    int *calls = ctx;
    if ((*calls)++ == 0) {
        memcpy(dst, "a,b\nc", cap < 5 ? cap : 5);
        return cap < 5 ? (ptrdiff_t)cap : 5;
    }
    errno = EIO;
    return -1;
}

TEST(csv_read_errors)
{
    int calls = 0;
    csv_reader *r = csv_open_fn(failing_read, &calls, "pipe", NULL);
    csv_row row;
    payi_err err;
    CHECK_EQ_INT(csv_next(r, &row, &err), -1);   /* the first fill fails before a row is complete */
    CHECK_EQ_INT(err.code, PAYI_IO);
    CHECK(strstr(err.msg, "pipe: read failed at byte 5") != NULL);
    csv_close(r);

    CHECK_EQ_INT(csv_open_path(&r, "/nonexistent/x.csv", NULL, &err), PAYI_NOT_FOUND);
    CHECK(r == NULL);
    CHECK(strstr(err.msg, "/nonexistent/x.csv") != NULL);
}

TEST(csv_open_path_reads_a_file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/p.csv", test_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("h\r\n\"v,1\"\r\n", f);
    fclose(f);
    csv_reader *r;
    payi_err err;
    CHECK_EQ_INT(csv_open_path(&r, path, NULL, &err), PAYI_OK);
    buf out = BUF_INIT;
    render(r, &out);
    CHECK_STR(out.data, "[h]\n{v,1}\n");
    CHECK_STR(csv_name(r), path);
    buf_release(&out);
    csv_close(r);
}

/* Memory source: values point into the input unless they held "". */
TEST(csv_zero_copy)
{
    static const char in[] = "abc,\"d,e\",\"f\"\"g\"\n";
    csv_reader *r = csv_open_mem(in, sizeof in - 1, "z", NULL);
    csv_row row;
    CHECK_EQ_INT(csv_next(r, &row, NULL), 1);
    CHECK(row.f[0].p == in);
    CHECK(row.f[1].p == in + 5);
    CHECK(row.f[2].p < in || row.f[2].p >= in + sizeof in);
    CHECK_EQ_INT(row.f[2].len, 3);
    CHECK_MEM(row.f[2].p, "f\"g", 3);
    csv_close(r);
}

/* ---- a randomized round trip ---- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Writes a random table as RFC 4180 (random LF/CRLF, optional final line
 * ending) into in, and its rendering into want. */
static void random_table(buf *in, buf *want)
{
    static const char alphabet[] = "ab,\"\r\n x\xC3\xA9";
    int rows = 1 + (int)rnd(20);
    for (int r = 0; r < rows; r++) {
        int nf = 1 + (int)rnd(6);
        for (int i = 0; i < nf; i++) {
            char v[40];
            int len = (int)rnd(12);
            for (int k = 0; k < len; k++)
                v[k] = alphabet[rnd(sizeof alphabet - 1)];
            bool must = len == 0 && nf == 1;   /* else it would be a blank line */
            for (int k = 0; k < len; k++)
                must |= v[k] == ',' || v[k] == '"' || v[k] == '\r' || v[k] == '\n';
            bool quote = must || rnd(4) == 0;
            if (i)
                buf_putc(in, ',');
            if (quote) {
                buf_putc(in, '"');
                for (int k = 0; k < len; k++) {
                    if (v[k] == '"')
                        buf_putc(in, '"');
                    buf_putc(in, v[k]);
                }
                buf_putc(in, '"');
            } else {
                buf_put(in, v, (size_t)len);
            }
            buf_putc(want, quote ? '{' : '[');
            buf_put(want, v, (size_t)len);
            buf_putc(want, quote ? '}' : ']');
        }
        buf_putc(want, '\n');
        if (r < rows - 1 || rnd(2))
            buf_puts(in, rnd(2) ? "\r\n" : "\n");
    }
}

TEST(csv_random_round_trip)
{
    rng_state = 42;
    for (int t = 0; t < 300; t++) {
        buf in = BUF_INIT, want = BUF_INIT;
        random_table(&in, &want);
        expect(__LINE__, in.data, in.len, NULL, want.data, NULL);
        buf_release(&in);
        buf_release(&want);
    }
}
