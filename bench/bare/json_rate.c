/* json_rate.c — parse-only rate of payi's JSON parser (src/base/json.c) on
 * the event lines bench/http.sh sends, for the target "NDJSON appends >= 50 %
 * of the parse-only rate".
 *
 * Reads FILE (NDJSON: one event per line, blank lines skipped), then parses
 * the lines round-robin with json_parse (one json_doc reused, as payi's NDJSON
 * path reuses one per request) for SECONDS of wall time on one thread, and
 * prints one JSON object on stdout:
 *   {"lines":N,"bytes":B,"seconds":S,"lines_per_s":X,"bytes_per_s":Y,"distinct_lines":D,"threads":1}
 * Only parsing is timed: no validation of the event's fields, no copying.
 * Exit 1 if a line does not parse (the load would be sending bad JSON).
 *
 * Usage: json_rate FILE [SECONDS]     (default 2)
 * Built by bench/http.sh: cc -O2 -Isrc json_rate.c src/base/json.c src/base/buf.c src/base/mem.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: json_rate FILE [SECONDS]\n");
        return 2;
    }
    double seconds = argc == 3 ? atof(argv[2]) : 2.0;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    static char text[1 << 24];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';

    /* Split into lines (trailing \r and blanks trimmed, as payi does). */
    size_t cap = 1024, nlines = 0;
    const char **start = malloc(cap * sizeof *start);
    size_t *len = malloc(cap * sizeof *len);
    for (char *p = text, *end = text + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        size_t l = (size_t)(stop - p);
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (l) {
            if (nlines == cap) {
                cap *= 2;
                start = realloc(start, cap * sizeof *start);
                len = realloc(len, cap * sizeof *len);
            }
            start[nlines] = p;
            len[nlines] = l;
            nlines++;
        }
        p = nl ? nl + 1 : end;
    }
    if (nlines == 0) {
        fprintf(stderr, "json_rate: no lines in %s\n", argv[1]);
        return 2;
    }

    json_doc doc = JSON_DOC_INIT;
    json_error je;
    for (size_t i = 0; i < nlines; i++) {   /* check every line once, untimed */
        if (!json_parse(&doc, start[i], len[i], NULL, &je)) {
            fprintf(stderr, "json_rate: line %zu: %s\n", i + 1, je.msg);
            return 1;
        }
    }

    uint64_t done = 0, bytes = 0, nodes = 0;
    double t0 = now_s(), t1 = t0;
    size_t i = 0;
    while (t1 - t0 < seconds) {
        for (int k = 0; k < 1000; k++) {   /* look at the clock every 1000 lines */
            if (!json_parse(&doc, start[i], len[i], NULL, &je))
                return 1;
            nodes += doc.n;
            bytes += len[i];
            done++;
            if (++i == nlines)
                i = 0;
        }
        t1 = now_s();
    }
    double el = t1 - t0;
    printf("{\"lines\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"lines_per_s\":%.1f,\"bytes_per_s\":%.1f,"
           "\"distinct_lines\":%zu,\"nodes_per_line\":%.2f,\"threads\":1}\n",
           (unsigned long long)done, (unsigned long long)bytes, el, (double)done / el, (double)bytes / el, nlines,
           (double)nodes / (double)done);
    json_doc_release(&doc);
    free(start);
    free(len);
    return 0;
}
