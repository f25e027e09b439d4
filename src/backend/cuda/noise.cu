/* DP-SGD Gaussian noise on the GPU: cuda_noise_blocks, the device twin of noise_blocks in
 * src/privacy/noise.c, giving bit for bit the same values for the same key, so that a seeded run adds
 * the same noise on either device. It repeats the CPU code's every step: ChaCha20 (RFC 8439 rounds)
 * with the 64-bit counter in state words 12-13 and the block number as nonce in words 14-15 (the
 * layout of dp_chacha20_x16), the words arranged as noise_block arranges them, and Box–Muller with the
 * same ln_unit / cos_sin_turn / unit_open polynomials. Those are IEEE double operations each rounded
 * once, so they are written here with the explicitly rounded intrinsics (__dmul_rn, __dadd_rn,
 * __dsub_rn, __ddiv_rn, __dsqrt_rn, __fma_rn): nvcc contracts a*b + c into an fma by default, the C
 * code (ISO C mode) never does, and a contracted product would change the last bits. A change to the
 * noise in noise.c must be made here too (tests/test_gpu_noise.c compares the two).
 *
 * One thread per ChaCha20 block: lane l of batch k of noise block b (counter 16k + l, nonce b) feeds
 * four Box–Muller pairs, i.e. 8 plain values or 2 hardened ones of that batch. The noise lives only in
 * registers (no scratch buffer, no spills) until it is added to x. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_noise.h"

extern "C" {
#include "dpformer/noise.h" /* DP_NOISE_BLOCK */
}

/* noise.c's batches: 16 ChaCha20 blocks = 128 64-bit words = 64 Box–Muller pairs, which give 128 plain
 * values or 32 hardened ones. */
#define NOISE_LANES 16
#define PLAIN_PER_BATCH 128
#define HARDENED_PER_BATCH 32
static_assert(DP_NOISE_BLOCK % PLAIN_PER_BATCH == 0 && DP_NOISE_BLOCK % HARDENED_PER_BATCH == 0,
              "a noise block is a whole number of batches");

/* The key travels to the kernel by value (kernel parameters), never through global memory. */
struct noise_key {
    uint32_t k[8];
};

/* ---------------------------------------------------------------------------------------------
 * ChaCha20
 * ------------------------------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t rotl32(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

#define QR(a, b, c, d)                     \
    do {                                   \
        a += b, d ^= a, d = rotl32(d, 16); \
        c += d, b ^= c, b = rotl32(b, 12); \
        a += b, d ^= a, d = rotl32(d, 8);  \
        c += d, b ^= c, b = rotl32(b, 7);  \
    } while (0)

/* The block of dp_chacha20_x16's lane with 64-bit counter `counter` (words 12 low, 13 high) and
 * 64-bit nonce `nonce` (words 14 low, 15 high): the sixteen output words. */
__device__ __forceinline__ void chacha20_block(const noise_key &key, uint64_t counter, uint64_t nonce,
                                               uint32_t out[16]) {
    const uint32_t i0 = 0x61707865u, i1 = 0x3320646eu, i2 = 0x79622d32u, i3 = 0x6b206574u; /* "expand 32-byte k" */
    const uint32_t i12 = (uint32_t)counter, i13 = (uint32_t)(counter >> 32);
    const uint32_t i14 = (uint32_t)nonce, i15 = (uint32_t)(nonce >> 32);
    uint32_t x0 = i0, x1 = i1, x2 = i2, x3 = i3;
    uint32_t x4 = key.k[0], x5 = key.k[1], x6 = key.k[2], x7 = key.k[3];
    uint32_t x8 = key.k[4], x9 = key.k[5], x10 = key.k[6], x11 = key.k[7];
    uint32_t x12 = i12, x13 = i13, x14 = i14, x15 = i15;
#pragma unroll 2
    for (int r = 0; r < 10; r++) { /* 20 rounds = 10 double rounds: columns, then diagonals */
        QR(x0, x4, x8, x12);
        QR(x1, x5, x9, x13);
        QR(x2, x6, x10, x14);
        QR(x3, x7, x11, x15);
        QR(x0, x5, x10, x15);
        QR(x1, x6, x11, x12);
        QR(x2, x7, x8, x13);
        QR(x3, x4, x9, x14);
    }
    out[0] = x0 + i0, out[1] = x1 + i1, out[2] = x2 + i2, out[3] = x3 + i3;
    out[4] = x4 + key.k[0], out[5] = x5 + key.k[1], out[6] = x6 + key.k[2], out[7] = x7 + key.k[3];
    out[8] = x8 + key.k[4], out[9] = x9 + key.k[5], out[10] = x10 + key.k[6], out[11] = x11 + key.k[7];
    out[12] = x12 + i12, out[13] = x13 + i13, out[14] = x14 + i14, out[15] = x15 + i15;
}

/* ---------------------------------------------------------------------------------------------
 * Box–Muller: noise.c's unit_open, ln_unit and cos_sin_turn, operation for operation
 * ------------------------------------------------------------------------------------------- */

__device__ __forceinline__ double bits_to_double(uint64_t b) { return __longlong_as_double((long long)b); }
__device__ __forceinline__ uint64_t double_to_bits(double d) { return (uint64_t)__double_as_longlong(d); }

/* (w + 1/2) / 2^64 rounded to nearest, kept below 1. */
__device__ __forceinline__ double unit_open(uint64_t w) {
    double hi = __dmul_rn(__ll2double_rn((long long)(w >> 12)), 0x1p-52);
    double lo = __dmul_rn(__dadd_rn(__ll2double_rn((long long)(w & 0xFFF)), 0.5), 0x1p-64);
    uint64_t b = double_to_bits(__dadd_rn(hi, lo));
    return bits_to_double(b - (uint64_t)(b == 0x3FF0000000000000ull));
}

/* ln(u) for a normal double u in (0, 1). */
__device__ __forceinline__ double ln_unit(double u) {
    uint64_t b = double_to_bits(u);
    int64_t e = (int64_t)(b >> 52) - 1023;
    uint64_t mb = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    uint64_t big = mb > 0x3FF6A09E667F3BCDull; /* m > √2: halve m (exponent − 1) and add 1 to e */
    double m = bits_to_double(mb - (big << 52));
    e += (int64_t)big;
    double s = __ddiv_rn(__dsub_rn(m, 1.0), __dadd_rn(m, 1.0)), s2 = __dmul_rn(s, s);
    double y = s2, y2 = __dmul_rn(y, y), y4 = __dmul_rn(y2, y2), y8 = __dmul_rn(y4, y4);
    double a0 = __fma_rn(2.0 / 5, y, 2.0 / 3), a1 = __fma_rn(2.0 / 9, y, 2.0 / 7), a2 = __fma_rn(2.0 / 13, y, 2.0 / 11);
    double a3 = __fma_rn(2.0 / 17, y, 2.0 / 15), a4 = __fma_rn(2.0 / 21, y, 2.0 / 19);
    double p = __fma_rn(a4, y8, __fma_rn(__fma_rn(a3, y2, a2), y4, __fma_rn(a1, y2, a0)));
    double ln_m = __fma_rn(__dmul_rn(s, s2), p, __dmul_rn(2.0, s)); /* 2s + s^3·(2/3 + ...) */
    const double ln2_hi = 0x1.62e42feep-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double de = __ll2double_rn((long long)e);
    return __fma_rn(de, ln2_hi, __fma_rn(de, ln2_lo, ln_m));
}

/* cos and sin of the angle 2π·w/2^64 (quadrant from the integer, Taylor series on [−π/4, π/4)). */
__device__ __forceinline__ void cos_sin_turn(uint64_t w, double *c_out, double *s_out) {
    uint64_t b = w + (1ull << 61);
    uint64_t q = b >> 62;
    int64_t f = (int64_t)(b & ((1ull << 62) - 1)) - ((int64_t)1 << 61);
    double x = __dmul_rn(__ll2double_rn((long long)f), 0x1.921fb54442d18p-62); /* π/2 · 2^-62 */
    double x2 = __dmul_rn(x, x);
    double x4 = __dmul_rn(x2, x2);
    double s01 = __fma_rn(1.0 / 120.0, x2, -1.0 / 6.0), s23 = __fma_rn(1.0 / 362880.0, x2, -1.0 / 5040.0);
    double s45 = __fma_rn(1.0 / 6227020800.0, x2, -1.0 / 39916800.0);
    double s67 = __fma_rn(1.0 / 355687428096000.0, x2, -1.0 / 1307674368000.0);
    double ps = __fma_rn(__fma_rn(s67, x4, s45), __dmul_rn(x4, x4), __fma_rn(s23, x4, s01));
    double s = __fma_rn(__dmul_rn(x, x2), ps, x);
    double c01 = __fma_rn(1.0 / 24.0, x2, -0.5), c23 = __fma_rn(1.0 / 40320.0, x2, -1.0 / 720.0);
    double c45 = __fma_rn(1.0 / 479001600.0, x2, -1.0 / 3628800.0);
    double c67 = __fma_rn(1.0 / 20922789888000.0, x2, -1.0 / 87178291200.0);
    double pc = __fma_rn(__fma_rn(c67, x4, c45), __dmul_rn(x4, x4), __fma_rn(c23, x4, c01));
    double c = __fma_rn(x2, pc, 1.0);
    uint64_t bs = double_to_bits(s), bc = double_to_bits(c), swap = 0 - (q & 1);
    uint64_t cq = (bs & swap) | (bc & ~swap), sq = (bc & swap) | (bs & ~swap);
    *c_out = bits_to_double(cq ^ (((q + 1) >> 1 & 1) << 63)); /* flip the sign bit for q = 1, 2 */
    *s_out = bits_to_double(sq ^ ((q >> 1) << 63));           /* and for q = 2, 3 */
}

/* One pair of dp_noise_box_muller: radius word ur, angle word ua. */
__device__ __forceinline__ void box_muller(uint64_t ur, uint64_t ua, double *zc, double *zs) {
    double r = __dsqrt_rn(__dmul_rn(-2.0, ln_unit(unit_open(ur))));
    double c, s;
    cos_sin_turn(ua, &c, &s);
    *zc = __dmul_rn(r, c);
    *zs = __dmul_rn(r, s);
}

/* Word m (0..7) of a ChaCha20 block read as 64-bit words, as noise_block reads it. */
__device__ __forceinline__ uint64_t word64(const uint32_t w[16], int m) {
    return (uint64_t)w[2 * m] | (uint64_t)w[2 * m + 1] << 32;
}

/* x[i] = noise (fill) or x[i] + noise formed in double and rounded once (add), as in noise_block. */
__device__ __forceinline__ void put(real *x, size_t i, size_t n, double v, int add) {
    if (i >= n) return;
    x[i] = add ? (real)__dadd_rn((double)x[i], v) : (real)v;
}

/* ---------------------------------------------------------------------------------------------
 * The kernel
 * ------------------------------------------------------------------------------------------- */

/* Thread g is lane l = g % 16 of global batch G = g / 16; batch G is batch k = G mod (batches per
 * block) of noise block b = G / (batches per block) and covers values [G·per, G·per + per) of x (a
 * block is a whole number of batches, so G·per = b·DP_NOISE_BLOCK + k·per). In noise_block, batch k
 * of block b is dp_chacha20_x16(key, 16k, b); its 64-bit word m of lane l is u[16m + l], and pair j
 * of the Box–Muller takes u[j] (radius) and u[j + 64] (angle). So lane l's block feeds the pairs
 * j = l + 16q, q = 0..3 (words q and q + 4). Plain: pair j gives values j (cos) and j + 64 (sin), i.e.
 * values l + 16q for q = 0..7. Hardened: value j (< 32) sums pairs j and j + 32, i.e. value l + 16h
 * (h = 0, 1) takes words h, h + 4 and h + 2, h + 6. */
template <int HARDENED>
__global__ void __launch_bounds__(256) noise_kernel(real *x, size_t n, noise_key key, double scale, int add,
                                                    size_t nthreads) {
    const size_t per = HARDENED ? HARDENED_PER_BATCH : PLAIN_PER_BATCH;
    const size_t batches_per_block = DP_NOISE_BLOCK / per;
    for (size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x; g < nthreads; g += (size_t)gridDim.x * blockDim.x) {
        const size_t G = g / NOISE_LANES;
        const unsigned l = (unsigned)(g % NOISE_LANES);
        const size_t base = G * per + l; /* this thread's first value; the others follow every 16 */
        if (base >= n) continue;
        const uint64_t b = G / batches_per_block, k = G % batches_per_block;
        uint32_t w[16];
        chacha20_block(key, k * NOISE_LANES + l, b, w);
        if constexpr (HARDENED != 0) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                double c0, s0, c1, s1;
                box_muller(word64(w, h), word64(w, h + 4), &c0, &s0);
                box_muller(word64(w, h + 2), word64(w, h + 6), &c1, &s1);
                double v = __dmul_rn(__dadd_rn(__dadd_rn(c0, s0), __dadd_rn(c1, s1)), scale);
                put(x, base + 16 * h, n, v, add);
            }
        } else {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                double c, s;
                box_muller(word64(w, q), word64(w, q + 4), &c, &s);
                put(x, base + 16 * q, n, __dmul_rn(c, scale), add);
                put(x, base + 16 * q + 64, n, __dmul_rn(s, scale), add);
            }
        }
    }
}

extern "C" void cuda_noise_blocks(real *x, size_t n, const uint32_t key[8], double scale, int hardened, int add) {
    if (!n) return;
    noise_key k;
    for (int j = 0; j < 8; j++) k.k[j] = key[j];
    const size_t per = hardened ? HARDENED_PER_BATCH : PLAIN_PER_BATCH;
    const size_t nthreads = (n + per - 1) / per * NOISE_LANES;
    const int threads = 256;
    size_t blocks = (nthreads + threads - 1) / threads;
    if (blocks > ((size_t)1 << 20)) blocks = (size_t)1 << 20; /* the kernel strides over the rest */
    if (hardened)
        noise_kernel<1><<<(unsigned)blocks, threads>>>(x, n, k, scale, add, nthreads);
    else
        noise_kernel<0><<<(unsigned)blocks, threads>>>(x, n, k, scale, add, nthreads);
    CUDA_CHECK_LAUNCH();
    /* The launch copied the key into the kernel's parameters; wipe the host copy. */
    volatile uint32_t *vk = k.k;
    for (int j = 0; j < 8; j++) vk[j] = 0;
}
