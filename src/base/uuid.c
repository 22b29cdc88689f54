#include "base/uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* xoshiro256** per thread; seeded from the kernel's CSPRNG on first use. */
static _Thread_local uint64_t rng_state[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(void)
{
    size_t got = 0;
    while (got < sizeof rng_state) {
        ssize_t n = getrandom((char *)rng_state + got, sizeof rng_state - got, 0);
        if (n < 0) {
            perror("payi: getrandom");
            abort();   /* ids must be unique; no weak fallback */
        }
        got += (size_t)n;
    }
    if (!(rng_state[0] | rng_state[1] | rng_state[2] | rng_state[3]))
        rng_state[0] = 1;
    rng_seeded = 1;
}

static uint64_t rng_next(void)
{
    if (!rng_seeded)
        rng_seed();
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void uuid_generate(payi_uuid *out)
{
    uint64_t a = rng_next(), b = rng_next();
    memcpy(out->b, &a, 8);
    memcpy(out->b + 8, &b, 8);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x40);   /* version 4 */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool uuid_parse(payi_uuid *out, const char *s, size_t len)
{
    if (len != UUID_STR_LEN)
        return false;
    int byte = 0;
    for (size_t i = 0; i < len;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
            i++;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->b[byte++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return byte == 16;
}

void uuid_format(const payi_uuid *u, char out[UUID_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u->b[i] >> 4];
        *p++ = hex[u->b[i] & 15];
    }
    *p = '\0';
}

bool uuid_is_nil(const payi_uuid *u)
{
    static const payi_uuid nil;
    return memcmp(u, &nil, sizeof nil) == 0;
}
