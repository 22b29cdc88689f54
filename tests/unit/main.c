/* The unit-test runner.  Usage: test_unit [substring]  runs the tests whose
 * name contains substring (all by default). */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#define MAX_TESTS 1024

struct test_entry {
    const char *name;
    test_fn fn;
};
static struct test_entry tests[MAX_TESTS];
static int ntests;
static int current_failures;
static const char *current_name;
static char tmp_root[256];
static int tmp_seq;

void test_register(const char *name, test_fn fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s (%s:%d): ", current_name, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    current_failures++;
}

const char *test_tmpdir(void)
{
    static char path[512];
    if (!tmp_root[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_root, sizeof tmp_root, "%s/payi-unit-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    snprintf(path, sizeof path, "%s/t%d", tmp_root, ++tmp_seq);
    if (mkdir(path, 0700) != 0) {
        perror("mkdir");
        exit(2);
    }
    return path;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct test_entry *)a)->name, ((const struct test_entry *)b)->name);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    qsort(tests, (size_t)ntests, sizeof tests[0], by_name);
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter))
            continue;
        current_name = tests[i].name;
        current_failures = 0;
        tests[i].fn();
        if (current_failures) {
            failed++;
        } else {
            passed++;
            if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "ok   %s\n", tests[i].name);
        }
    }
    if (tmp_root[0] && !getenv("TEST_KEEP_TMP"))
        nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
