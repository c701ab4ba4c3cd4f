/* rng.c - xoshiro256** (Blackman & Vigna 2018) seeded by splitmix64. Every
 * random draw in mela goes through a mela_rng value passed explicitly. */
#include <math.h>

#include "mela.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

mela_rng mela_rng_new(uint64_t seed)
{
    mela_rng r;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r.s[i] = splitmix64(&x);
    return r;
}

mela_rng mela_rng_derive(uint64_t seed, uint64_t a, uint64_t b)
{
    /* Mix the three words through splitmix64 so that nearby (a, b) pairs give
     * unrelated streams. */
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ (a * 0xd1b54a32d192ed03ULL);
    h = splitmix64(&x);
    x = h ^ (b * 0xabc98388fb8fac03ULL);
    h = splitmix64(&x);
    return mela_rng_new(h);
}

uint64_t mela_rng_u64(mela_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint32_t mela_rng_below(mela_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: exact uniformity. */
    uint64_t m = (uint64_t)(uint32_t)(mela_rng_u64(r) >> 32) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)(uint32_t)(mela_rng_u64(r) >> 32) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float mela_rng_uniform(mela_rng *r) { return (float)(mela_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float mela_rng_normal(mela_rng *r)
{
    double u1 = ((double)(mela_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(mela_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void mela_rng_shuffle(mela_rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mela_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
