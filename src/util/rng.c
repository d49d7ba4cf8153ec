/* The library's random generator: xoshiro256** seeded through splitmix64.
 * Integer outputs are the same on every platform; normals go through libm
 * (log, sqrt, cos, sin), so they are reproducible wherever libm is. */
#include <math.h>

#include "util/util.h"

void sresid__rng_seed(sresid__rng *r, uint64_t seed)
{
    /* splitmix64: the state advances by the golden ratio, each output mixed */
    for (int i = 0; i < 4; i++, seed += 0x9E3779B97F4A7C15ull)
        r->s[i] = sresid__mix64(seed);
    r->spare_valid = 0;
}

double sresid__rng_uniform(sresid__rng *r)
{
    return (double)(sresid__rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t sresid__rng_below(sresid__rng *r, uint64_t n)
{
    /* Lemire's multiply-and-reject: unbiased, no division in the common case */
    unsigned __int128 m = (unsigned __int128)sresid__rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t threshold = (0 - n) % n;
        while (lo < threshold) {
            m = (unsigned __int128)sresid__rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double sresid__rng_normal(sresid__rng *r)
{
    /* Box-Muller, both outputs used */
    if (r->spare_valid) {
        r->spare_valid = 0;
        return r->spare;
    }
    double u1 = 1.0 - sresid__rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = sresid__rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->spare_valid = 1;
    return rad * cos(th);
}

void sresid__rng_normal_f32(sresid__rng *r, float *dst, size_t n, double mean, double sd)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)(mean + sd * sresid__rng_normal(r));
}
