/* store_upsert.c — upserts per second into a read store (src/store), the
 * way the view engine writes: ROWS rows over KEYS keys, BATCH rows per
 * transaction, each batch followed by its checkpoint (store_put_meta) in
 * the same transaction.  The table is a typical grouped view: a text key,
 * a bigint sum, a double sum and a bigint max.  Keys step by a prime so no
 * key repeats inside a batch (the engine folds a batch by key first);
 * "random" draws them instead (PostgreSQL then cuts a batch where a key
 * repeats).
 *
 * Prints one JSON object:
 *   {"store":"sqlite","rows":1000000,"keys":100000,"batch":1000,"seconds":S,"rows_per_s":R,"stored":K}
 *
 * Usage: store_upsert URL [ROWS [KEYS [BATCH [random]]]]
 * Build (after make):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc $(pkg-config --cflags libpq) -o build/store_upsert \
 *      bench/bare/store_upsert.c build/libpayi.a $(pkg-config --libs sqlite3 libpq libmicrohttpd luajit) \
 *      -lpg_query -pthread -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int count_row(void *ctx, const expr_value *v, uint32_t n)
{
    (void)v, (void)n;
    ++*(long *)ctx;
    return 0;
}

static void die(const char *what, const payi_err *e)
{
    fprintf(stderr, "store_upsert: %s: %s\n", what, e->msg);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_upsert URL [ROWS [KEYS [BATCH [random]]]]\n");
        return 2;
    }
    long rows = argc > 2 ? atol(argv[2]) : 1000000, keys = argc > 3 ? atol(argv[3]) : 100000;
    long batch = argc > 4 ? atol(argv[4]) : 1000;
    int random_keys = argc > 5 && strcmp(argv[5], "random") == 0;
    static const store_col cols[] = {
        {"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},
        {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
        {"x", EXPR_DOUBLE, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
        {"mx", EXPR_BIGINT, SMERGE_MAX, 0, 0, STORE_NO_GUARD},
    };
    const store_table t = {"bench_upsert", cols, 4};
    payi_err e;
    store *s;
    if (store_open(&s, argv[1], STORE_RW, &e) != PAYI_OK)
        die("open", &e);
    if (store_drop_table(s, t.name, &e) != PAYI_OK || store_create_table(s, &t, &e) != PAYI_OK)
        die("create", &e);

    expr_value *vals = calloc((size_t)batch * 4, sizeof *vals);
    char (*names)[16] = calloc((size_t)batch, sizeof *names);
    unsigned long long rnd = 88172645463325252ULL;
    double t0 = now();
    for (long i = 0; i < rows; i += batch) {
        long n = rows - i < batch ? rows - i : batch;
        for (long r = 0; r < n; r++) {
            long q = i + r, k;
            if (random_keys) {
                rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
                k = (long)(rnd % (unsigned long long)keys);
            } else {
                k = (q * 7919) % keys;
            }
            snprintf(names[r], sizeof names[r], "key-%ld", k);
            vals[r * 4] = expr_text(names[r], strlen(names[r]));
            vals[r * 4 + 1] = expr_int(q % 100);
            vals[r * 4 + 2] = expr_double((double)(q % 7) * 0.5);
            vals[r * 4 + 3] = expr_int(q);
        }
        if (store_begin(s, &e) != PAYI_OK || store_upsert(s, &t, vals, (size_t)n, NULL, NULL, &e) != PAYI_OK ||
            store_put_meta(s, "bench_upsert", 1, (uint64_t)(i + n), t.name, NULL, &e) != PAYI_OK ||
            store_commit(s, &e) != PAYI_OK)
            die("batch", &e);
    }
    double secs = now() - t0;
    long stored = 0;
    if (store_select(s, &t, NULL, 0, NULL, 0, -1, count_row, &stored, &e) != PAYI_OK)
        die("select", &e);
    printf("{\"store\":\"%s\",\"rows\":%ld,\"keys\":%ld,\"batch\":%ld,\"keys_drawn\":\"%s\",\"seconds\":%.2f,"
           "\"rows_per_s\":%.0f,\"stored\":%ld}\n",
           store_get_kind(s) == STORE_SQLITE ? "sqlite" : "postgresql", rows, keys, batch,
           random_keys ? "random" : "stride", secs, (double)rows / secs, stored);
    store_drop_table(s, t.name, &e);
    store_delete_meta(s, "bench_upsert", &e);
    store_close(s);
    free(vals);
    free(names);
    return 0;
}
