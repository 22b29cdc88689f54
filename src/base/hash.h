/* hash.h — the one non-cryptographic hash payi uses: FNV-1a 64 over bytes,
 * and a finalizer (MurmurHash3's fmix64) that spreads FNV's weak low bits
 * before a table masks them.  Values are stored (view definition hashes,
 * event ids derived from idempotency keys and generator rows): never change
 * either function. */
#ifndef PAYI_HASH_H
#define PAYI_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_SEED 0xcbf29ce484222325ULL

static inline uint64_t hash_fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t k = 0; k < n; k++)
        h = (h ^ s[k]) * 0x100000001b3ULL;
    return h;
}

static inline uint64_t hash_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

#endif
