// fastmath.h: exp, sigmoid and tanh that the compiler vectorises.
//
// std::exp and std::tanh are library calls, so a loop around them runs one element at a
// time. The float versions here are straight-line arithmetic with no branch and no call:
// special cases are chosen with bit-mask selects (where, below) rather than ?:, which
// GCC would keep as branches (under -ftrapping-math it may not compute both sides) and
// which would then stop the loop from vectorising. They are always inlined, so a loop
// compiled for AVX2 or AVX-512 (simd.h) gets them in that instruction set too. The
// double versions call the C library: float64 is the path that finite-difference checks
// run on.
//
// Error bounds, measured in ulps of the correctly rounded float (a double computation
// as reference; the smallest subnormal, 2^-149, as the unit for subnormal results) over
// every 16th float bit pattern (2^28 inputs spread over the whole float range), for the
// baseline (SSE2) and the AVX2+FMA builds; the AVX-512 build runs the same operations,
// and tests/test_fastmath.py checks the bounds on all three over ~10^6 inputs:
//   exp      <= 1.02 ulp (baseline 0.99), subnormal results (-103.97 < x < -87.34)
//            included; +inf for x > 88.7228 and +inf; +0 for x < -103.97 and -inf;
//            NaN -> NaN.
//   sigmoid  <= 2.36 ulp everywhere, including the subnormal results of x < -87.34
//            (where sigmoid(x) = e^x); 0 and 1 exactly at -inf and +inf; NaN -> NaN.
//   tanh     <= 1.50 ulp everywhere, near 0 too (tanh(x) = x to the last bit for tiny x,
//            tanh(-0) = -0); +-1 at +-inf; NaN -> NaN.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "simd.h"

namespace pycore {
namespace fastmath {
namespace detail {

PYCORE_INLINE int32_t bits_of(float x) {
    int32_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

PYCORE_INLINE float float_of(int32_t b) {
    float x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}

// All ones when c, else 0: a lane mask.
PYCORE_INLINE int32_t mask_if(bool c) { return -static_cast<int32_t>(c); }

// mask ? a : b, bitwise.
PYCORE_INLINE float select(int32_t mask, float a, float b) {
    return float_of((bits_of(a) & mask) | (bits_of(b) & ~mask));
}

constexpr int32_t kSignBit = INT32_MIN;
constexpr int32_t kAbsMask = 0x7FFFFFFF;

}  // namespace detail

// condition ? a : b without a branch, for conditionals in loops that must vectorise:
// a and b are both computed (as arguments), then one is picked with a bit mask. Written
// as `c ? a : b`, GCC keeps a branch around a float operation in a or b (under its
// default -ftrapping-math it may not compute what the source computes only sometimes),
// and a loop with a branch does not vectorise: leaky_relu's `x > 0 ? x : x * slope` ran
// 47x slower than this select on 1.6M floats. float and double.
template <typename T>
PYCORE_INLINE T where(bool condition, T a, T b) {
    using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    static_assert(sizeof(T) == sizeof(Bits), "where: float or double");
    Bits a_bits, b_bits;
    std::memcpy(&a_bits, &a, sizeof a);
    std::memcpy(&b_bits, &b, sizeof b);
    const Bits mask = -static_cast<Bits>(condition);
    const Bits bits = (a_bits & mask) | (b_bits & ~mask);
    T result;
    std::memcpy(&result, &bits, sizeof result);
    return result;
}

// e^x. Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2; e^r by Cephes' expf polynomial
// (degree 7 overall); then 2^n in two halves, 2^(n>>1) * 2^(n - (n>>1)), each a normal
// float for |n| <= 252, so that results near overflow (n = 128) and subnormal results
// (n down to -150) come out of the same multiplications, rounded once.
// x is first clamped to [-110, 89] with two selects: beyond, e^x rounds to 0 or
// overflows to inf in those same multiplications (e^-110 < 2^-150, e^89 > FLT_MAX), so
// -inf gives +0 and +inf gives +inf with no special case; a NaN passes both selects and
// the polynomial makes the result NaN. (Masking the special cases afterwards, as this
// did before, took a third more instructions.)
namespace detail {
constexpr float kExpLow = -110.0f, kExpHigh = 89.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, hi exact in 9 bits
constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: t = y + kRound holds round(y) in its low bits
constexpr uint32_t kRoundBits = 0x4B400000;

// r = y - n ln 2 (Cody-Waite: n ln2hi is exact, so the first subtraction is too)
PYCORE_INLINE float reduce_ln2(float y, float nf) { return (y - nf * kLn2Hi) - nf * kLn2Lo; }

// e^r for |r| <= ln2/2: Cephes' expf polynomial, 1 + r + r^2 P(r)
PYCORE_INLINE float exp_reduced(float r) {
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

// exp's computation for x already clamped to [-110, 89] (or NaN).
PYCORE_INLINE float exp_clamped(float xc) {
    const float t = xc * kLog2e + kRound;
    // unsigned arithmetic: a NaN's t has arbitrary bits, and its n must not overflow
    const uint32_t n = static_cast<uint32_t>(bits_of(t)) - kRoundBits;
    const float er = exp_reduced(reduce_ln2(xc, t - kRound));
    const uint32_t n_half = static_cast<uint32_t>(static_cast<int32_t>(n) >> 1);
    const float scale_a = float_of(static_cast<int32_t>((n_half + 127u) << 23));
    const float scale_b = float_of(static_cast<int32_t>((n - n_half + 127u) << 23));
    return er * scale_a * scale_b;
}
}  // namespace detail

PYCORE_INLINE float exp(float x) {
    using namespace detail;
    return exp_clamped(where(x < kExpLow, kExpLow, where(x > kExpHigh, kExpHigh, x)));
}

// e^x for x <= 0 or NaN only (sigmoid's and tanh's e^-|x|, softmax's e^(x - max)): exp
// without the upper clamp, one select fewer (6% of sigmoid). x up to 89 is still right;
// above, the result is wrong, so never call it on an argument that can be positive.
PYCORE_INLINE float exp_nonpositive(float x) {
    using namespace detail;
    return exp_clamped(where(x < kExpLow, kExpLow, x));
}

// e^x for x <= 0 or NaN where only a sum that is >= 1 is wanted (log_softmax's and cross
// entropy's sum_c e^(x_c - max)): results below 2^-126 may come out as 0. exp_nonpositive
// without its subnormal results: x clamped to -88 (NaN kept), t's low bits hold n + 127
// (as in tanh), and 2^n is one shift, a zero for n = -127, instead of two scale factors.
// Every term it changes is below 2^-126, which a double sum >= 1 cannot hold: the sums come
// out the same, bit for bit, in 15 instructions per vector instead of 22.
PYCORE_INLINE float exp_for_sum(float x) {
    using namespace detail;
    constexpr float kRoundBiased = kRound + 127.0f;
    const float y = where(x < -88.0f, -88.0f, x);
    const float t = y * kLog2e + kRoundBiased;
    const float two_n = float_of(static_cast<int32_t>(static_cast<uint32_t>(bits_of(t)) << 23));
    return exp_reduced(reduce_ln2(y, t - kRoundBiased)) * two_n;
}

// 1 / (1 + e^-x), as e/(1 + e) for x < 0 and 1/(1 + e) for x >= 0 with e = e^-|x| <= 1:
// never overflows, and keeps full relative precision for very negative x (where the
// result is e^x itself, down to subnormals).
PYCORE_INLINE float sigmoid(float x) {
    using namespace detail;
    const int32_t x_bits = bits_of(x);
    const float e = exp_nonpositive(float_of(x_bits | kSignBit));
    const float numerator = select(mask_if(x_bits < 0), e, 1.0f);
    return numerator / (1.0f + e);
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = e^-2|x|, for |x| >= 0.625 (where 1 - e >= 0.71
// has no cancellation); below, Cephes' tanhf polynomial x + x^3 P(x^2).
// e needs none of exp's range: |x| is clamped to 10 (tanh rounds to 1 from 9.01 on, and
// e^-20 still does), so n = round(-2|x| / ln 2) lies in [-29, 0] and 2^n is one normal
// float, built by a single shift: t = y log2(e) + (1.5 * 2^23 + 127) holds n + 127 in its
// low bits, and t << 23 moves them into the exponent field (the constant's own bits
// shift out). With exp_nonpositive's clamp, two-half scaling and bias arithmetic, tanh
// took 45 AVX-512 instructions per 16 floats and lost to PyTorch's (Sleef's); this takes
// 34, and gives the same results bit for bit (2^n is exact either way, and every |x| > 10
// gives 1).
PYCORE_INLINE float tanh(float x) {
    using namespace detail;
    constexpr int32_t kSmallBits = 0x3F200000;  // 0.625f
    const int32_t x_bits = bits_of(x);
    const int32_t abs_bits = x_bits & kAbsMask;
    const float a = float_of(abs_bits);
    const float z = a * a;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float near_zero = a + a * z * p;
    // e = e^y, y = -2 min(|x|, 10) (a NaN stays NaN: the where keeps it), as exp_clamped
    // but with t's low bits holding n + 127: 1.5 * 2^23 + the exponent bias
    constexpr float kRoundBiased = kRound + 127.0f;
    const float y = -2.0f * where(a > 10.0f, 10.0f, a);
    const float t = y * kLog2e + kRoundBiased;
    const float two_n = float_of(static_cast<int32_t>(static_cast<uint32_t>(bits_of(t)) << 23));
    const float e = exp_reduced(reduce_ln2(y, t - kRoundBiased)) * two_n;
    const float far = (1.0f - e) / (1.0f + e);
    // tanh(|x|), then the sign of x (so that tanh(-0) = -0)
    const float magnitude = select(mask_if(abs_bits < kSmallBits), near_zero, far);
    return float_of(bits_of(magnitude) | (x_bits & kSignBit));
}

// x > 0 ? a : 0, from the sign and magnitude bits of x, so that loops with it vectorise
// (relu and its derivative). A NaN x counts as positive when its sign bit is clear.
PYCORE_INLINE float where_positive(float x, float a) {
    using namespace detail;
    return float_of(bits_of(a) & mask_if(bits_of(x) > 0));
}

PYCORE_INLINE double where_positive(double x, double a) {
    int64_t x_bits;
    std::memcpy(&x_bits, &x, sizeof x_bits);
    return where(x_bits > 0, a, 0.0);
}

PYCORE_INLINE double exp(double x) { return std::exp(x); }

PYCORE_INLINE double exp_nonpositive(double x) { return std::exp(x); }

PYCORE_INLINE double exp_for_sum(double x) { return std::exp(x); }

PYCORE_INLINE double sigmoid(double x) {
    const double e = std::exp(-std::fabs(x));
    return (x < 0.0 ? e : 1.0) / (1.0 + e);
}

PYCORE_INLINE double tanh(double x) { return std::tanh(x); }

// max(a, b); a NaN with its sign bit clear wins (so a NaN reaches a row's max and
// poisons a softmax row, as in PyTorch). float compares order-preserving integer keys
// of the bits, so that loops with it vectorise without float comparisons.
PYCORE_INLINE float max(float a, float b) {
    using namespace detail;
    const int32_t a_bits = bits_of(a), b_bits = bits_of(b);
    const int32_t a_key = a_bits ^ ((a_bits >> 31) & kAbsMask);
    const int32_t b_key = b_bits ^ ((b_bits >> 31) & kAbsMask);
    return select(mask_if(a_key > b_key), a, b);
}

PYCORE_INLINE double max(double a, double b) { return a > b || a != a ? a : b; }

// log(s) in double for a softmax's sum s = sum_c exp(x_c - max) >= 1 (the max's own term
// is exp(0) = 1), or s = NaN or +inf (returned as is). Branch-free, so that a loop of
// them vectorises: std::log is a library call, and log_softmax over the 32 channels of
// (64, 32, 28, 28) spent 18% of its instructions in it (one per 32 values).
// s = 2^e m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f) = 2 (f + f^3/3 + f^5/5 + ...),
// f = (m - 1) / (m + 1), |f| <= 0.1716: the series to f^21 leaves a remainder below 1e-19
// of the result. Within a few ulp of double; never call it on s < 1 (subnormal and
// non-positive s give wrong results).
PYCORE_INLINE double log_of_sum(double s) {
    constexpr double kLn2 = 0.69314718055994530942, kSqrt2 = 1.41421356237309504880;
    constexpr int64_t kMantissa = (int64_t(1) << 52) - 1, kOneBits = int64_t(1023) << 52;
    constexpr int64_t kTwo52Bits = int64_t(0x433) << 52;  // 2^52: its low bits hold an integer exactly
    int64_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    // the biased exponent (s > 0: no sign bit) as a double, without an int64 -> double
    // conversion (AVX2 has none): 2^52 + k has k in its low mantissa bits
    // (a logical shift, which SSE2 has for 64-bit lanes; the sign bit of s is clear)
    const int64_t exponent_bits = kTwo52Bits | static_cast<int64_t>(static_cast<uint64_t>(bits) >> 52);
    double exponent_plus_2_52, m;
    std::memcpy(&exponent_plus_2_52, &exponent_bits, sizeof exponent_plus_2_52);
    const int64_t m_bits = (bits & kMantissa) | kOneBits;  // m in [1, 2)
    std::memcpy(&m, &m_bits, sizeof m);
    const bool high = m > kSqrt2;
    m = where(high, 0.5 * m, m);
    const double e = (exponent_plus_2_52 - (4503599627370496.0 + 1023.0)) + where(high, 1.0, 0.0);
    const double f = (m - 1.0) / (m + 1.0), z = f * f;
    double p = 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    const double log_m = 2.0 * f + 2.0 * f * z * p;
    return where(s < std::numeric_limits<double>::infinity(), e * kLn2 + log_m, s);
}

// Row reductions for softmax-like loops: the max, and sums accumulated in double, each
// over kLanes independent partial results. One running max or sum is a chain of
// dependent operations that waits on each step's latency; separate lanes overlap (and
// vectorise). 16 lanes fill one AVX-512 register of floats (two of AVX2, four of SSE):
// with 8, GCC vectorised the exp of row_exp_sum 8 wide on AVX-512 too, at 0.64 against
// 0.39 ns per element. The results do not depend on the instruction set.
constexpr int64_t kLanes = 16;

// lanes[0] + ... + lanes[kLanes - 1], added pairwise (lane j with lane j + half, halving):
// four dependent vector additions instead of a chain of sixteen scalar ones, which cost
// as much as the exponentials of a row of 65 classes.
// Written out level by level with fixed trip counts, so that each level is one vector
// addition on registers (a loop over `half` went through the stack: stores of whole
// vectors reloaded in halves, which the CPU cannot forward, in every softmax row).
PYCORE_INLINE double lane_sum(const double* lanes) {
    static_assert(kLanes == 16, "lane_sum adds 16 lanes in four levels");
    double s8[8], s4[4];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) s8[j] = lanes[j] + lanes[j + 8];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// max_c x[c] (see max for NaNs; -inf for n == 0).
template <typename T>
PYCORE_INLINE T row_max(const T* x, int64_t n) {
    T lanes[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = -std::numeric_limits<T>::infinity();
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] = max(lanes[j], x[c + j]);
    for (; c < n; ++c) lanes[0] = max(lanes[0], x[c]);
    T result = lanes[0];
    for (int64_t j = 1; j < kLanes; ++j) result = max(result, lanes[j]);
    return result;
}

// float: one running max that `omp simd` may split into vector lanes (MAXPS). A NaN
// may be dropped from the max; it still poisons the row through exp(NaN - max).
template <>
PYCORE_INLINE float row_max<float>(const float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
#if PYCORE_HAVE_OMP_SIMD  // portable.h: not in MSVC's OpenMP 2.0
#pragma omp simd reduction(max : m)
#endif
    for (int64_t c = 0; c < n; ++c) m = x[c] > m ? x[c] : m;
    return m;
}

// sum_c x[c] * y[c] in double (y == nullptr: sum_c x[c]).
template <typename T>
PYCORE_INLINE double row_dot(const T* x, const T* y, int64_t n) {
    double lanes[kLanes] = {};
    int64_t c = 0;
    if (y) {
        for (; c + kLanes <= n; c += kLanes)
            for (int64_t j = 0; j < kLanes; ++j) lanes[j] += double(x[c + j]) * double(y[c + j]);
        for (; c < n; ++c) lanes[0] += double(x[c]) * double(y[c]);
    } else {
        for (; c + kLanes <= n; c += kLanes)
            for (int64_t j = 0; j < kLanes; ++j) lanes[j] += double(x[c + j]);
        for (; c < n; ++c) lanes[0] += double(x[c]);
    }
    return lane_sum(lanes);
}

template <typename T>
PYCORE_INLINE double row_sum(const T* x, int64_t n) { return row_dot<T>(x, nullptr, n); }

// sum_c (x[c] - mu) * y[c], or sum_c (x[c] - mu)^2 when y == nullptr, in double (batch
// norm's variance and its gradient's sum dy (x - mu)).
template <typename T>
PYCORE_INLINE double row_centered_dot(const T* x, double mu, const T* y, int64_t n) {
    double lanes[kLanes] = {};
    int64_t c = 0;
    if (y) {
        for (; c + kLanes <= n; c += kLanes)
            for (int64_t j = 0; j < kLanes; ++j) lanes[j] += (double(x[c + j]) - mu) * double(y[c + j]);
        for (; c < n; ++c) lanes[0] += (double(x[c]) - mu) * double(y[c]);
    } else {
        for (; c + kLanes <= n; c += kLanes)
            for (int64_t j = 0; j < kLanes; ++j) {
                const double d = double(x[c + j]) - mu;
                lanes[j] += d * d;
            }
        for (; c < n; ++c) {
            const double d = double(x[c]) - mu;
            lanes[0] += d * d;
        }
    }
    return lane_sum(lanes);
}

// sum_c exp(x[c] - shift) for c < n, shift the row's max (so that x[c] - shift <= 0 or
// NaN: exp_nonpositive), in double over kLanes lanes as row_sum; with
// y, also y[c] = exp(x[c] - shift): softmax's exponentials and their sum in one pass
// over the row. log_softmax and cross entropy need only the sum: y == nullptr skips
// the stores (kStore is the same choice made at compile time, so that neither loop
// has a branch in it).
//
// The last n % kLanes values (n >= kLanes) go through the same vector body as one more
// block: the last kLanes values of the row, x[n - kLanes, n), with the lanes already
// summed masked to +0 (where). A scalar tail loop cost a scalar exp per value, as much
// as a whole vector, for 1 value in a row of 65 classes and 8 in a row of 1000; a
// padded copy of the tail cost more (scalar stores reloaded as a vector stall). With
// kStore the block rewrites the overlapped y values with the same exponentials (y and x
// never alias: restrict).
template <bool kStore, typename T>
PYCORE_INLINE double row_exp_sum_impl(T* PYCORE_RESTRICT y, const T* PYCORE_RESTRICT x, T shift, int64_t n) {
    double lanes[kLanes];
#pragma GCC unroll 16
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = 0.0;
    const int64_t full = n / kLanes * kLanes;
    // the sum alone: exp_for_sum (the same sum, fewer instructions)
    const auto exp_term = [](T v) PYCORE_LAMBDA_INLINE { return kStore ? exp_nonpositive(v) : exp_for_sum(v); };
    for (int64_t c = 0; c < full; c += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) {
            const T e = exp_term(x[c + j] - shift);
            if constexpr (kStore) y[c + j] = e;
            lanes[j] += double(e);
        }
    if (full < n && full > 0) {
        const int64_t c = n - kLanes, first_new = full - c;
        for (int64_t j = 0; j < kLanes; ++j) {
            const T e = exp_term(x[c + j] - shift);
            if constexpr (kStore) y[c + j] = e;
            lanes[j] += double(where(j >= first_new, e, T(0)));
        }
    } else {
        for (int64_t c = full; c < n; ++c) {
            const T e = exp_term(x[c] - shift);
            if constexpr (kStore) y[c] = e;
            lanes[0] += double(e);
        }
    }
    return lane_sum(lanes);
}

template <typename T>
PYCORE_INLINE double row_exp_sum(T* PYCORE_RESTRICT y, const T* PYCORE_RESTRICT x, T shift, int64_t n) {
    return y ? row_exp_sum_impl<true>(y, x, shift, n) : row_exp_sum_impl<false>(y, x, shift, n);
}

}  // namespace fastmath
}  // namespace pycore
