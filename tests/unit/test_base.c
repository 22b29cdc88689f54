#include <stdlib.h>
#include <time.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/timefmt.h"
#include "base/uuid.h"
#include "test.h"

TEST(crc32c_known_vectors)
{
    CHECK_EQ_U64(crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_U64(crc32c_portable(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_U64(crc32c(0, "", 0), 0);
    unsigned char zeros[32] = {0};
    CHECK_EQ_U64(crc32c(0, zeros, 32), 0x8A9136AAu);   /* RFC 3720 B.4 */
}

TEST(crc32c_hw_matches_portable_and_chains)
{
    unsigned char data[1031];
    srand(7);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)rand();
    for (size_t len = 0; len < sizeof data; len += 37) {
        CHECK_EQ_U64(crc32c(0, data, len), crc32c_portable(0, data, len));
        size_t half = len / 3;
        CHECK_EQ_U64(crc32c(crc32c(0, data, half), data + half, len - half), crc32c(0, data, len));
    }
}

TEST(uuid_roundtrip_and_version)
{
    payi_uuid a, b;
    char s[UUID_STR_LEN + 1];
    uuid_generate(&a);
    CHECK((a.b[6] >> 4) == 4);
    CHECK((a.b[8] & 0xc0) == 0x80);
    uuid_format(&a, s);
    CHECK(uuid_parse(&b, s, UUID_STR_LEN));
    CHECK_MEM(&a, &b, 16);
    CHECK(!uuid_parse(&b, "not-a-uuid", 10));
    CHECK(!uuid_parse(&b, "123e4567-e89b-12d3-a456-42661417400g", 36));
    CHECK(!uuid_parse(&b, "123e4567e89b-12d3-a456-4266141740000", 36));
    CHECK(uuid_parse(&b, "123E4567-E89B-12D3-A456-426614174000", 36));
    uuid_format(&b, s);
    CHECK_STR(s, "123e4567-e89b-12d3-a456-426614174000");
    payi_uuid c;
    uuid_generate(&c);
    CHECK(memcmp(&a, &c, 16) != 0);
}

TEST(err_table_words_and_status)
{
    CHECK_STR(payi_code_word(PAYI_CONFLICT), "conflict");
    CHECK_STR(payi_code_word(PAYI_NOSPACE), "insufficient_storage");
    CHECK_EQ_INT(payi_code_http(PAYI_NOSPACE), 507);
    payi_err e;
    CHECK_EQ_INT(payi_err_set(&e, PAYI_VALIDATION, "stream", "bad %s", "name"), PAYI_VALIDATION);
    CHECK_STR(e.msg, "bad name");
    CHECK_STR(e.field, "stream");
}

TEST(buf_grows_and_formats)
{
    buf b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_putc(&b, 'x');
    CHECK_EQ_U64(b.len, 1000);
    buf_reset(&b);
    buf_put_i64(&b, -9223372036854775807LL - 1);
    CHECK_STR(b.data, "-9223372036854775808");
    buf_reset(&b);
    buf_printf(&b, "%d-%s", 42, "z");
    CHECK_STR(b.data, "42-z");
    buf_release(&b);
}

TEST(time_format_rfc3339)
{
    char s[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(1678320000123456789LL, s);
    CHECK_STR(s, "2023-03-09T00:00:00.123456Z");
}

/* The hand-written calendar against the C library's, across eras and leap days. */
TEST(time_format_rfc3339_matches_gmtime)
{
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* 1900..2255 (int64 nanoseconds end in 2262), both sides of the epoch */
        int64_t secs = (int64_t)(x % (355ULL * 365 * 86400)) - 70LL * 365 * 86400;
        int64_t ns = secs * 1000000000 + (int64_t)(x % 1000000) * 1000;
        char got[TIME_RFC3339_LEN + 1], want[64];
        time_format_rfc3339(ns, got);
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(x % 1000000));
        if (strcmp(got, want) != 0) {
            test_fail(__FILE__, __LINE__, "%" PRId64 ": %s != %s", ns, got, want);
            break;
        }
    }
}
