/* The demo's random numbers: splitmix64 to seed, xoshiro256** to draw.
 * Integer arithmetic only, so a seed gives the same run everywhere. */
#ifndef DEMO_RNG_H
#define DEMO_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct demo_rng {
    uint64_t s[4];
} demo_rng;

static inline uint64_t demo_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A seed derived from a seed and a stream number (cells, steps, tensors). */
static inline uint64_t demo_mix(uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    demo_splitmix(&x);
    return demo_splitmix(&x);
}

static inline void demo_rng_seed(demo_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = demo_splitmix(&seed);
}

static inline uint64_t demo_rng_next(demo_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n) (n > 0), by rejection so every value is equally likely. */
static inline uint64_t demo_rng_below(demo_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = demo_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* Uniform in (0, 1): 53 random bits, never 0. */
static inline double demo_rng_unit(demo_rng *r)
{
    return ((double)(demo_rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

/* Standard normal (Box-Muller; one of the pair is dropped for simplicity). */
static inline double demo_rng_normal(demo_rng *r)
{
    double u = demo_rng_unit(r), v = demo_rng_unit(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif /* DEMO_RNG_H */
