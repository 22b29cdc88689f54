/* test.h — the unit-test harness: tests register themselves, the runner
 * prints one line per failure and closes with "N passed, N failed".
 *
 *   TEST(crc_known_vector) { CHECK_EQ_U64(crc32c(0, "123456789", 9), 0xE3069283); }
 *
 * A CHECK that fails records the file, line and values, and the test goes on,
 * so one run shows every broken expectation of a test. */
#ifndef PAYI_TEST_H
#define PAYI_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A fresh empty directory under $TMPDIR for this test; removed at exit. */
const char *test_tmpdir(void);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void test_reg_##name(void)                   \
    {                                                                                \
        test_register(#name, test_##name);                                           \
    }                                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond))                                                                 \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                       \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                           \
    do {                                                                             \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                             \
        if (a_ != b_)                                                                \
            test_fail(__FILE__, __LINE__, "%s == %s: %" PRIu64 " != %" PRIu64, #a,   \
                      #b, a_, b_);                                                   \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                           \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_)                                                                \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); \
    } while (0)

#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                       \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,      \
                      a_ ? a_ : "(null)", b_ ? b_ : "(null)");                       \
    } while (0)

#define CHECK_MEM(a, b, n)                                                           \
    do {                                                                             \
        if (memcmp((a), (b), (n)) != 0)                                              \
            test_fail(__FILE__, __LINE__, "memcmp(%s, %s, %s) != 0", #a, #b, #n);    \
    } while (0)

#endif
