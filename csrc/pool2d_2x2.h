// pool2d_2x2.h: the forward of 2x2 stride-2 max pooling of a plane (LeNet-5's pooling),
// vectorised once per instruction set (simd.h's copies); used by pool2d.pyx.
//
// One output row: the window of output ow is a = top[2ow], b = top[2ow + 1],
// c = bottom[2ow], d = bottom[2ow + 1]; N outputs at a time, the even and odd elements of
// 2N loaded values split by a shuffle, then the general loop's rule in order (a later
// value wins where it is larger or NaN), so ties and NaNs pick what it picks. argmax is
// written as int64 in the same pass. A row's last block ends at OW, overlapping the one
// before (the same values written twice), so a row of 14 (LeNet conv1) is the blocks
// [0, 8) and [6, 14), never a scalar tail; rows narrower than the narrowest block (4 floats,
// 2 doubles) take the scalar loop.
//
// In pool2d.pyx's own SSE2 code (a vectorised row, then the argmax in a second, scalar
// loop) LeNet's two poolings took 37 instructions per output; here 21 on AVX2 (callgrind:
// 15 on conv1's 14-wide output rows, more on conv2's rows of 5, two overlapping blocks of 4).
// The backward stays pool2d.pyx's scatter: a one-pass version written here, each output
// storing its window's four gradients, took 38 instructions per output against the
// scatter's 15.
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>

#include "simd.h"

namespace pycore {
namespace pool2d {

// One output of the window (a, b; c, d) in the general loop's order: its maximum and the
// maximum's place in the window, 0..3.
template <typename T>
inline T window_max(T a, T b, T c, T d, int* position) {
    T best = a;
    int at = 0;
    if (b > best || b != b) best = b, at = 1;
    if (c > best || c != c) best = c, at = 2;
    if (d > best || d != d) best = d, at = 3;
    *position = at;
    return best;
}

// Scalar rows: the portable build and rows narrower than a block.
template <typename T>
inline void max_row_scalar(T* y, int64_t* arg, const T* top, const T* bottom, int64_t OW, int64_t W,
                           int64_t row_start, bool relu) {
    for (int64_t ow = 0; ow < OW; ++ow) {
        int at;
        const T best = window_max(top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1], &at);
        y[ow] = relu && best <= 0 ? T(0) : best;  // NaN kept, as elementwise.cpp's relu
        if (arg) arg[ow] = row_start + (at >> 1) * W + 2 * ow + (at & 1);
    }
}

#if PYCORE_HAVE_VECTOR_EXTENSIONS
// N lanes of T, and N lanes of int64 (the argmax), loaded and stored unaligned.
template <typename T, int N>
struct Lanes {
    typedef T vec __attribute__((vector_size(N * sizeof(T))));
    typedef int64_t index __attribute__((vector_size(N * sizeof(int64_t))));
    typedef decltype(vec{} > vec{}) mask;  // int32 lanes for float, int64 for double

    template <class V>
    static PYCORE_INLINE V load(const void* p) {
        V v;
        std::memcpy(&v, p, sizeof(V));
        return v;
    }
    template <class V>
    static PYCORE_INLINE void store(void* p, V v) {
        std::memcpy(p, &v, sizeof(V));
    }
    template <int... I>
    static PYCORE_INLINE vec evens(vec lo, vec hi, std::integer_sequence<int, I...>) {
        return __builtin_shufflevector(lo, hi, (2 * I)...);
    }
    template <int... I>
    static PYCORE_INLINE vec odds(vec lo, vec hi, std::integer_sequence<int, I...>) {
        return __builtin_shufflevector(lo, hi, (2 * I + 1)...);
    }
    template <int... I>
    static PYCORE_INLINE index iota(std::integer_sequence<int, I...>) {
        return index{I...};
    }
    static constexpr auto lane_ids = std::make_integer_sequence<int, N>{};
};

// Outputs [ow0, ow0 + N) of one row (see the top of the file).
template <typename T, int N>
PYCORE_INLINE void max_block(T* y, int64_t* arg, const T* top, const T* bottom, int64_t ow0, int64_t W,
                             int64_t row_start, bool relu) {
    using L = Lanes<T, N>;
    using V = typename L::vec;
    using M = typename L::mask;
    using I = typename L::index;
    const V top_lo = L::template load<V>(top + 2 * ow0), top_hi = L::template load<V>(top + 2 * ow0 + N);
    const V bottom_lo = L::template load<V>(bottom + 2 * ow0), bottom_hi = L::template load<V>(bottom + 2 * ow0 + N);
    const V a = L::evens(top_lo, top_hi, L::lane_ids), b = L::odds(top_lo, top_hi, L::lane_ids);
    const V c = L::evens(bottom_lo, bottom_hi, L::lane_ids), d = L::odds(bottom_lo, bottom_hi, L::lane_ids);
    const M take_b = (b > a) | (b != b);
    V best = take_b ? b : a;
    M at = take_b & 1;
    const M take_c = (c > best) | (c != c);
    best = take_c ? c : best;
    at = take_c ? M{} + 2 : at;
    const M take_d = (d > best) | (d != d);
    best = take_d ? d : best;
    at = take_d ? M{} + 3 : at;
    if (relu) best = best <= V{} ? V{} : best;
    L::store(y + ow0, best);
    if (arg) {
        const I place = __builtin_convertvector(at, I);
        const I index = row_start + (-(place >> 1) & W) + 2 * (ow0 + L::iota(L::lane_ids)) + (place & 1);
        L::store(arg + ow0, index);
    }
}

// Blocks of N over a row of OW >= N outputs, the last one ending at OW.
template <int N, class Block>
PYCORE_INLINE void blocks_of_row(int64_t OW, const Block& block) {
    int64_t ow0 = 0;
    for (; ow0 + N <= OW; ow0 += N) block(ow0);
    if (ow0 < OW) block(OW - N);
}

#endif

// One plane on vectors of at most VB bytes: the widest block that fits the row (the scalar
// loop in a build without vector extensions).
template <typename T, int VB>
PYCORE_INLINE void max_plane(T* y, int64_t* argmax, const T* x, int64_t W, int64_t OH, int64_t OW, bool relu) {
    for (int64_t oh = 0; oh < OH; ++oh) {
        T* y_row = y + oh * OW;
        int64_t* arg_row = argmax ? argmax + oh * OW : nullptr;
        const T *top = x + 2 * oh * W, *bottom = top + W;
        const int64_t start = 2 * oh * W;
#if PYCORE_HAVE_VECTOR_EXTENSIONS
        constexpr int wide = VB / sizeof(T), half = wide / 2 >= 16 / int(sizeof(T)) ? wide / 2 : wide;
        constexpr int narrow = 16 / sizeof(T);
        auto run = [&](auto lanes) PYCORE_LAMBDA_INLINE {
            constexpr int n = decltype(lanes)::value;
            blocks_of_row<n>(OW, [&](int64_t ow0) PYCORE_LAMBDA_INLINE {
                max_block<T, n>(y_row, arg_row, top, bottom, ow0, W, start, relu);
            });
        };
        if (OW >= wide) {
            run(std::integral_constant<int, wide>{});
            continue;
        }
        if (OW >= half) {
            run(std::integral_constant<int, half>{});
            continue;
        }
        if (OW >= narrow) {
            run(std::integral_constant<int, narrow>{});
            continue;
        }
#endif
        max_row_scalar(y_row, arg_row, top, bottom, OW, W, start, relu);
    }
}

// y (OH, OW) and argmax (NULL: not wanted) of one plane x (H, W) with 2*OH <= H, 2*OW <= W,
// on the SIMD path pool2d.pyx passes: 2 AVX-512 (64-byte vectors), 1 AVX2 (32), else the
// baseline (16; the only copy of a build without simd.h's AVX ones).
template <typename T>
void max_plane_2x2(int isa, T* y, int64_t* argmax, const T* x, int64_t W, int64_t OH, int64_t OW, bool relu) {
#if PYCORE_SIMD_HAVE_AVX2
    if (isa == 2)
        return simd::run_avx512(
            [&](int64_t, int64_t) PYCORE_LAMBDA_INLINE { max_plane<T, 64>(y, argmax, x, W, OH, OW, relu); }, 0, 0);
    if (isa == 1)
        return simd::run_avx2(
            [&](int64_t, int64_t) PYCORE_LAMBDA_INLINE { max_plane<T, 32>(y, argmax, x, W, OH, OW, relu); }, 0, 0);
#else
    (void)isa;
#endif
    max_plane<T, 16>(y, argmax, x, W, OH, OW, relu);
}

}  // namespace pool2d
}  // namespace pycore
