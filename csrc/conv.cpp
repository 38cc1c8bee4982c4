// conv.cpp: conv2d forward and backward as im2col + GEMM, or as a direct kernel for few
// output channels (see conv.h for the math, and "direct forward" below).
//
// For one image and one group, a column matrix is built from the input:
//
//   col[(c, kh, kw), (oh, ow)] = inp[c, oh*sh - pad_top + kh*dh, ow*sw - pad_left + kw*dw]
//                                (0 outside the image)          shape (Cg*KH*KW, OH*OW)
//
// so that the convolution of the group is one matrix product, y_g = W_g @ col, with W_g
// the (OC/groups, Cg*KH*KW) block of the weight. A 1x1 kernel with stride 1 and no padding
// needs no im2col: the image itself, (Cg, H*W), is the column matrix.
//
// Column matrices are built a piece at a time, never for the whole batch:
//   - a large image is cut into tiles of output rows (forward), so that a tile's columns
//     and its output stay in one core's L2 cache between im2col and the GEMM;
//   - no thread's buffers pass about kTileMaxBytes (64 MiB): backward cuts an image whose
//     column matrix is larger into tiles of rows, and both passes cut a row too long for
//     that into segments of output columns (im2col/col2im take a rectangle of outputs);
//   - small images are taken a few at a time (a "chunk"), their column matrices side by
//     side, so that the GEMM gets at least kMinColumns columns (LeNet's 10x10 outputs alone
//     would leave it short of work per call).
//
// Threads. Work items (forward: chunk x group x tile; backward: slices of the batch) go to
// the threads whole, each thread with its own buffers (thread_local, allocated once per
// pooled thread); the GEMMs inside then run serially (pycore::num_threads() is 1 inside a
// parallel region). When the items do not split evenly over the threads (a batch of one in
// backward), they run one at a time and the threads work inside each: im2col/col2im split
// their rows or channels, and the GEMM splits its output.
#include "conv.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fastmath.h"
#include "gemm.h"
#include "omp_guard.h"
#include "parallel.h"
#include "simd.h"
#include "threads.h"

namespace pycore {
namespace {

// Elements a thread should copy (im2col, col2im, sums) before a second one helps.
constexpr int64_t kCopyGrain = int64_t(1) << 15;
// Multiply-adds per thread before another thread helps (the GEMM's own grain).
constexpr int64_t kGemmGrain = int64_t(1) << 18;
// Columns a GEMM should get at least: small images are chunked up to this.
constexpr int64_t kMinColumns = 512;
// A forward tile's columns of the column matrix (K values each) and of the output (OCg
// values each), and a backward tile's columns (backward_tiles), stay within about this
// many bytes (half of Zen 5's 1 MiB per-core L2, a quarter of this Xeon's 2 MiB). 256 KiB
// left 3x3 (64,32,28,28) -> 64 no tile of 8 rows, the first panel-exact one
// (forward_tile_rows): 26 ms at 512 KiB and 1 MiB against 29-39 ms at 256 KiB (CPU time,
// AVX-512, 1 thread, under load).
constexpr int64_t kTileBytes = int64_t(1) << 19;
// What one more forward tile (GEMM call) costs, counted in GEMM columns (forward_tile_rows).
constexpr int64_t kTileColumnsOverhead = 8;
// One output row is the smallest tile, unless its columns and output pass this many bytes:
// then the row is cut into segments of output columns (a 60,000-wide image and a 30,000-wide
// kernel need 3.6 GB for one row; segments keep every thread's buffers near 64 MiB).
constexpr int64_t kTileMaxBytes = int64_t(1) << 26;
// The weight gradient is summed over the batch in at most this many slices, each into its
// own partial buffer, and the partials are added in slice order at the end...
constexpr int64_t kMaxSlices = 16;
// ... and all partial buffers together hold at most this many elements (16 MB of float).
constexpr int64_t kPartialBudget = int64_t(1) << 22;

struct Dims {
    int64_t Cg, OCg;   // channels per group: input, output
    int64_t K;         // Cg*KH*KW: rows of the column matrix, columns of W_g
    int64_t plane;     // OH*OW: columns of one image's column matrix
    int64_t in_plane;  // H*W
    bool pointwise;    // 1x1, stride 1, no padding: the image is its own column matrix
    int64_t chunk;     // images per column matrix (1 for large images and for pointwise)
};

Dims dims_of(const Conv2dGeometry& g) {
    Dims d;
    d.Cg = g.C / g.groups;
    d.OCg = g.OC / g.groups;
    d.K = d.Cg * g.KH * g.KW;
    d.plane = g.OH * g.OW;
    d.in_plane = g.H * g.W;
    d.pointwise = g.KH == 1 && g.KW == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
                  g.pad_bottom == 0 && g.pad_left == 0 && g.pad_right == 0;
    d.chunk = d.pointwise ? 1 : std::max<int64_t>(1, std::min(g.N, (kMinColumns + d.plane - 1) / d.plane));
    return d;
}

// The per-thread buffers of conv (thread_scratch, parallel.h): 0 columns (or the direct
// kernels' padded input, or the row kernel's forward a tile's padded rows), 1 staging; the
// direct weight gradient's 2 transposed dout, 3 transposed dweight (the row kernel's: 2 its
// vector sums, 3 an image's dout rows).
struct ConvScratch;
template <typename T>
T* thread_buffer(int which, int64_t count) {
    return thread_scratch<ConvScratch, T>(which, count);
}

// The output positions o in [lo, hi) along one axis whose input position o*stride + offset
// lies inside [0, n); the others read padding.
inline void valid_range(int64_t n, int64_t out, int64_t stride, int64_t offset, int64_t* lo, int64_t* hi) {
    int64_t a = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t b = offset > n - 1 ? 0 : (n - 1 - offset) / stride + 1;
    a = std::min(a, out);
    b = std::min(b, out);
    *lo = a;
    *hi = std::max(a, b);
}

// d[0:n] = s[0:n] for im2col's short runs (one output row of a small image: LeNet's 10
// or 24 values): whole 16-byte pieces, the last one overlapping the one before it, so
// there is neither a scalar tail nor a libc call. Measured on LeNet conv2 (runs of 10):
// im2col took 44% of the forward with the element loop. GCC would turn the loop back
// into a memmove call (22% of the forward, in libc), hence the attribute on im2col (the
// caller: a callee with other optimize flags would not be inlined).
#if defined(__GNUC__) && !defined(__clang__)
#define PYCORE_NO_LIBC_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define PYCORE_NO_LIBC_LOOPS
#endif
template <typename T>
inline void copy_run(T* __restrict d, const T* __restrict s, int64_t n) {
    constexpr int64_t W = 16 / sizeof(T);
    if (n < W) {
        for (int64_t i = 0; i < n; ++i) d[i] = s[i];
        return;
    }
    int64_t i = 0;
    for (; i + W <= n; i += W) std::memcpy(d + i, s + i, 16);
    if (i < n) std::memcpy(d + n - W, s + n - W, 16);
}

// d[i] = s[2*i] for i < n (im2col's stride-2 rows): two 16-byte loads, their even elements
// shuffled into one store, never reading past s[2*(n-1)]; a scalar loop for the rest. On
// 3x3 stride 2 (32,64,32,32) -> 128 the element loop took 22% of the forward's
// instructions (9 per element, callgrind, AVX2 path).
template <typename T>
inline void copy_stride_2(T* __restrict d, const T* __restrict s, int64_t n) {
    int64_t i = 0;
#if PYCORE_HAVE_SHUFFLEVECTOR
    typedef T vec __attribute__((vector_size(16), aligned(alignof(T))));
    constexpr int64_t W = 16 / sizeof(T);
    for (; i + W + 1 <= n; i += W) {  // reads s[2i .. 2i + 2W - 1] <= s[2(n-1)]
        vec lo, hi, even;
        std::memcpy(&lo, s + 2 * i, 16);
        std::memcpy(&hi, s + 2 * i + W, 16);
        if constexpr (W == 4)
            even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6);
        else
            even = __builtin_shufflevector(lo, hi, 0, 2);
        std::memcpy(d + i, &even, 16);
    }
#endif
    for (; i < n; ++i) d[i] = s[2 * i];
}

// d[r*ld_d + ow] = s[r*ld_s + ow*sw + offset] for the rows r < rows and the columns ow in
// [ow_lo, ow_hi)
// (im2col's valid part of each output row), the branch on the stride taken once. With
// plain value arguments: in im2col's loop body GCC kept them on the stack and reloaded
// them for every output row (~80 instructions a row, for 16 values on 3x3 stride 2).
template <typename T>
PYCORE_NO_LIBC_LOOPS inline void copy_strided_rows(T* d, int64_t ld_d, const T* s, int64_t ld_s, int64_t offset,
                                                   int64_t rows, int64_t ow_lo, int64_t ow_hi, int64_t sw) {
    const int64_t n = ow_hi - ow_lo;
    if (n <= 0) return;
    d += ow_lo;
    s += ow_lo * sw + offset;  // inside the row: ow_lo is the first valid column
    if (sw == 1) {
        for (int64_t r = 0; r < rows; ++r) copy_run(d + r * ld_d, s + r * ld_s, n);
    } else if (sw == 2) {
        for (int64_t r = 0; r < rows; ++r) copy_stride_2(d + r * ld_d, s + r * ld_s, n);
    } else {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i) d[r * ld_d + i] = s[r * ld_s + i * sw];
    }
}

// Stride 1 and output rows as wide as the input's (OW == W: 3x3 with padding 1, "same"):
// output row oh of tap (kh, kw) reads input row oh + h_off shifted by w_off, so the valid
// output rows [oh_lo, oh_hi) of one tap read one run of the input plane, from
// plane[start + i] for i in [skip, end) (the run clipped to the plane: its first or last
// element can lie outside, in a padding column); the runs' padding columns are then fixed
// up by zero_padding_columns.
inline bool same_width_rows(const Conv2dGeometry& g, int64_t ow_begin, int64_t ow_end) {
    return g.stride_h == 1 && g.stride_w == 1 && g.OW == g.W && ow_begin == 0 && ow_end == g.OW;
}

struct PlaneRun {
    int64_t start, skip, end;
};

inline PlaneRun plane_run(const Conv2dGeometry& g, int64_t oh_lo, int64_t oh_hi, int64_t h_off, int64_t w_off) {
    const int64_t start = (oh_lo + h_off) * g.W + w_off, length = (oh_hi - oh_lo) * g.OW;
    return PlaneRun{start, std::max<int64_t>(0, -start), std::min(length, g.H * g.W - start)};
}

// d[r*OW + ow] = 0 for the rows r < rows and the columns ow outside [ow_lo, ow_hi): a padding
// column at a time, down the rows (a pad-wide loop per row costs more in set-up than its
// one or two stores).
template <typename T>
inline void zero_padding_columns(T* d, int64_t rows, int64_t OW, int64_t ow_lo, int64_t ow_hi) {
    auto zero_column = [=](int64_t ow) {
        for (int64_t r = 0; r < rows; ++r) d[r * OW + ow] = T(0);
    };
    for (int64_t ow = 0; ow < ow_lo; ++ow) zero_column(ow);
    for (int64_t ow = ow_hi; ow < OW; ++ow) zero_column(ow);
}

// d[i] += s[i], i < n (vectorised: the two do not overlap).
template <typename T>
PYCORE_INLINE void add_run(T* __restrict d, const T* __restrict s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

// The im2col columns of the output tile rows [oh_begin, oh_end) x columns [ow_begin, ow_end)
// of img (channels, H, W): a (channels*KH*KW, (oh_end - oh_begin)*(ow_end - ow_begin))
// matrix written at col with row stride ld (whole rows: ow_begin = 0, ow_end = OW).
// Every element is written (padding as zeros), so the buffer needs no clearing. A row is
// one (c, kh, kw): the output rows that read padding zeroed, the others' valid columns
// copied (copy_strided_rows: plain loops, the runs are short and a libc call per run costs
// more; with same-width rows, plane_run, one long copy for all of them), then their padding
// columns zeroed. On 3x3 (64,32,28,28)
// -> 64 that took im2col + memcpy from 19.0M to 10.8M instructions (callgrind, 4 images x
// 4 forwards, AVX2 path): the forward -10%.
template <typename T>
PYCORE_NO_LIBC_LOOPS void im2col(T* col, int64_t ld, const T* img, int64_t channels, const Conv2dGeometry& g, int64_t oh_begin,
            int64_t oh_end, int64_t ow_begin, int64_t ow_end) {
    const int64_t OW = ow_end - ow_begin;  // the tile's width (g.OW for whole rows)
    const int64_t taps = g.KH * g.KW, rows = channels * taps, width = (oh_end - oh_begin) * OW;
    const int64_t sw = g.stride_w;
    const bool same_width = same_width_rows(g, ow_begin, ow_end);
    const int nt = threads_for(rows * width, kCopyGrain);
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; ++r) errors.run([&] {
        const int64_t c = r / taps, kh = (r % taps) / g.KW, kw = r % g.KW;
        const int64_t h_off = kh * g.dilation_h - g.pad_top, w_off = kw * g.dilation_w - g.pad_left;
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        valid_range(g.H, g.OH, g.stride_h, h_off, &oh_lo, &oh_hi);
        valid_range(g.W, g.OW, sw, w_off, &ow_lo, &ow_hi);
        ow_lo = std::min(std::max(ow_lo, ow_begin), ow_end) - ow_begin;  // from here on relative
        ow_hi = std::min(std::max(ow_hi, ow_begin + ow_lo), ow_end) - ow_begin;  // to the tile
        oh_lo = std::min(std::max(oh_lo, oh_begin), oh_end);
        oh_hi = std::min(std::max(oh_hi, oh_lo), oh_end);
        const T* src = img + c * g.H * g.W;
        T* dst = col + r * ld;  // output row oh starts at dst + (oh - oh_begin)*OW
        std::fill(dst, dst + (oh_lo - oh_begin) * OW, T(0));
        if (oh_hi > oh_lo) {
            T* d = dst + (oh_lo - oh_begin) * OW;  // the valid rows: their valid columns copied
            if (same_width) {  // as one run of the plane (plane_run): a long run, libc's memcpy
                const PlaneRun run = plane_run(g, oh_lo, oh_hi, h_off, w_off);
                if (run.end > run.skip)
                    std::memcpy(d + run.skip, src + run.start + run.skip, sizeof(T) * (run.end - run.skip));
            } else {  // output column ow reads input column (ow_begin + ow)*sw + w_off
                copy_strided_rows(d, OW, src + (oh_lo * g.stride_h + h_off) * g.W, g.stride_h * g.W,
                                  ow_begin * sw + w_off, oh_hi - oh_lo, ow_lo, ow_hi, sw);
            }
            zero_padding_columns(d, oh_hi - oh_lo, OW, ow_lo, ow_hi);  // then their padding columns
        }
        std::fill(dst + (oh_hi - oh_begin) * OW, dst + width, T(0));
    });
    errors.rethrow();
}

// The column matrix of a forward item written by the GEMM straight into its packed B
// panels (implicit GEMM, gemm.h's BPanelFill), never stored whole: column j is output
// position j % width (of rows oh_begin..) of image j / width, row k is (c, kh, kw) as in
// im2col. Each element is written once, into a panel the micro-kernel reads next from L1,
// where im2col + pack_b write it twice and read it once more.
template <typename T>
struct ImplicitColumns final : BPanelFill<T> {
    const T* first_image;  // the group's first channel in the chunk's first image
    int64_t image_stride;  // C*H*W
    const Conv2dGeometry& g;
    int64_t oh_begin, width;

    ImplicitColumns(const T* first, int64_t stride, const Conv2dGeometry& geo, int64_t oh0, int64_t w)
        : first_image(first), image_stride(stride), g(geo), oh_begin(oh0), width(w) {}

    PYCORE_NO_LIBC_LOOPS void fill(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) const override {
        const int64_t taps = g.KH * g.KW, OW = g.OW, oh_end = oh_begin + width / OW;
        for (int64_t k = 0; k < kc; ++k) {
            const int64_t r = p0 + k, c = r / taps, kh = (r % taps) / g.KW, kw = r % g.KW;
            const int64_t h_off = kh * g.dilation_h - g.pad_top, w_off = kw * g.dilation_w - g.pad_left;
            int64_t ow_valid_lo, ow_valid_hi;
            valid_range(g.W, OW, g.stride_w, w_off, &ow_valid_lo, &ow_valid_hi);
            const T* channel = first_image + c * g.H * g.W;
            int64_t image = j0 / width, oh = oh_begin + (j0 % width) / OW, ow = (j0 % width) % OW;
            T* panel_row = dst + k * nr;  // row k of the current panel
            int64_t lane = 0;
            for (int64_t j = 0; j < nc;) {
                // A run: the same output row, the same panel.
                const int64_t run = std::min({OW - ow, nc - j, int64_t(nr) - lane});
                T* __restrict d = panel_row + lane - ow;  // d[o] for output column o
                const int64_t ih = oh * g.stride_h + h_off;
                int64_t lo = ow + run, hi = ow + run;  // the columns read from the image: none
                if (ih >= 0 && ih < g.H) {
                    lo = std::min(std::max(ow_valid_lo, ow), ow + run);
                    hi = std::min(std::max(ow_valid_hi, lo), ow + run);
                }
                for (int64_t o = ow; o < lo; ++o) d[o] = T(0);
                if (hi > lo) {
                    const T* __restrict s = channel + image * image_stride + ih * g.W + w_off;  // s[o * sw]
                    if (g.stride_w == 1)
                        copy_run(d + lo, s + lo, hi - lo);
                    else
                        for (int64_t o = lo; o < hi; ++o) d[o] = s[o * g.stride_w];
                }
                for (int64_t o = hi; o < ow + run; ++o) d[o] = T(0);
                j += run;
                lane += run;
                if (lane == nr) lane = 0, panel_row += kc * nr;
                ow += run;
                if (ow == OW) {
                    ow = 0;
                    if (++oh == oh_end) oh = oh_begin, ++image;
                }
            }
            if (lane) std::fill(panel_row + lane, panel_row + nr, T(0));  // the last panel's padding
        }
    }
};

// The padded input row a row-wise col2im sums into, on the stack: kRowBuffer values (4 KiB of
// float) hold rows up to ~1000 wide; wider ones take the run-by-run path below.
constexpr int64_t kRowBuffer = 1024;
// ... and its lane masks, one per (block of the row, kernel column): up to 64 (16 KiB).
constexpr int64_t kCol2imMasks = 64;

// col2im of a whole image (one tile, overwriting the image), for stride-1 columns, by input
// rows: input row (c, ih) is summed in padded columns p = iw + pad_left, a block of V at a
// time in registers. Tap (kh, kw) adds, to column p, its column-matrix entry for output
// column ow = p - kw*dw when 0 <= ow < OW: one vector load per tap, the lanes outside the
// run masked away; the terms landing in the padding are dropped at the end. Every input
// element gets its terms in (kh, kw) order from 0, as in the run-by-run loop below: the
// same bits (a lane masked away adds +0, which changes no sum that starts from +0). The
// loads reach up to col2im_slack values before and after the column matrix, which backward
// allocates (what they read there is masked away).
// On LeNet conv2's input gradient, (64,16,10,10) -> (64,6,14,14) with runs of 10, the
// run-by-run loop took 8.4M of the backward's 13.3M instructions (callgrind, AVX2 path).
template <typename T>
struct Col2imRows {
    static constexpr int V = 64 / sizeof(T);  // a block of padded columns: one zmm, two ymm
    using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

    // x where mask is all ones, +0 where it is 0 (bitwise: x may be any bits)
    static PYCORE_INLINE T keep(Bits mask, T x) {
        Bits bits;
        std::memcpy(&bits, &x, sizeof bits);
        bits &= mask;
        std::memcpy(&x, &bits, sizeof x);
        return x;
    }

    static PYCORE_INLINE void run(T* dst, const T* col, int64_t ld, int64_t c, const Conv2dGeometry& g,
                                  int64_t row_width) {
        const int64_t OW = g.OW, dw = g.dilation_w, blocks = (row_width + V - 1) / V;
        // lane l of block b, tap column kw reads output column b*V + l - kw*dw: kept when in the row
        alignas(64) Bits lane_mask[kCol2imMasks][V];
        for (int64_t b = 0; b < blocks; ++b)
            for (int64_t kw = 0; kw < g.KW; ++kw)
                for (int l = 0; l < V; ++l) {
                    const int64_t ow = b * V + l - kw * dw;
                    lane_mask[b * g.KW + kw][l] = ow >= 0 && ow < OW ? Bits(-1) : Bits(0);
                }
        for (int64_t ih = 0; ih < g.H; ++ih) {
            T row[kRowBuffer + V];  // every block is written
            for (int64_t b = 0; b < blocks; ++b) {
                T acc[V];
                for (int l = 0; l < V; ++l) acc[l] = T(0);
                for (int64_t kh = 0; kh < g.KH; ++kh) {
                    const int64_t t = ih + g.pad_top - kh * g.dilation_h;  // = oh * stride_h
                    if (t < 0 || t % g.stride_h != 0) continue;
                    const int64_t oh = t / g.stride_h;
                    if (oh >= g.OH) continue;
                    const T* src = col + (c * g.KH + kh) * g.KW * ld + oh * OW + b * V;
                    for (int64_t kw = 0; kw < g.KW; ++kw) {
                        const T* s = src + kw * (ld - dw);
                        const Bits* mask = lane_mask[b * g.KW + kw];
                        for (int l = 0; l < V; ++l) acc[l] += keep(mask[l], s[l]);
                    }
                }
                for (int l = 0; l < V; ++l) row[b * V + l] = acc[l];
            }
            std::memcpy(dst + ih * g.W, row + g.pad_left, sizeof(T) * g.W);
        }
    }
};

// The padded row's width for Col2imRows (its columns reach (KW-1)*dw past the output row's
// and pad_left + W past the row's start), and the values its loads may read before and
// after a column matrix.
inline int64_t col2im_row_width(const Conv2dGeometry& g) {
    return std::max(g.OW + (g.KW - 1) * g.dilation_w, g.pad_left + g.W);
}
template <typename T>
int64_t col2im_slack(const Conv2dGeometry& g) {
    return col2im_row_width(g) + Col2imRows<T>::V;
}

// img (channels, H, W) += col2im(col): the adjoint of im2col over the output tile rows
// [oh_begin, oh_end) x columns [ow_begin, ow_end) (im2col's layout), each column entry (row
// stride ld) added back onto the input position it was read from (padding dropped); with
// `clear`, img is zeroed first (overwritten). Split over channels: the KH*KW rows of one
// channel all write the same input plane, so a channel belongs to one thread.
// col is scratch: the entries that read padding may be zeroed (the same-width path below),
// and col2im_slack<T>(g) values before and after it must be readable (Col2imRows).
template <typename T>
void col2im(T* img, T* col, int64_t ld, int64_t channels, const Conv2dGeometry& g, int64_t oh_begin,
            int64_t oh_end, int64_t ow_begin, int64_t ow_end, bool clear) {
    const int64_t sw = g.stride_w, OW = ow_end - ow_begin;  // OW: the tile's width
    // im2col's same-width case (stride 1, whole rows as wide as the input): the valid rows of
    // one (kh, kw) are one run of the plane. Their padding entries are zeroed, so that
    // adding the whole run adds 0 where they land (the neighbouring row's edge pixel),
    // then one vectorised add per run instead of one short add per output row.
    const bool same_width = same_width_rows(g, ow_begin, ow_end);
    const int nt = threads_for(channels * g.KH * g.KW * (oh_end - oh_begin) * OW, kCopyGrain);
    // Col2imRows where it applies (the whole image overwritten, stride-1 columns, a padded row
    // and its masks on the stack) and where runs are short: same-width rows are one long run
    // per tap, which took 23.5M instructions against Col2imRows' 28.0M on 3x3 (4,64,32,32)
    // -> 128 (9.3M against 8.4M on 28-wide rows; callgrind, AVX2 path).
    const int64_t row_width = col2im_row_width(g);
    const int64_t row_blocks = (row_width + Col2imRows<T>::V - 1) / Col2imRows<T>::V;
    const bool whole_image = clear && oh_begin == 0 && oh_end == g.OH && ow_begin == 0 && ow_end == g.OW;
    const bool by_rows = whole_image && !same_width && sw == 1 && row_width <= kRowBuffer &&
                         row_blocks * g.KW <= kCol2imMasks;
    const simd::Isa isa = simd::current_isa();
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t c = 0; c < channels; ++c) errors.run([&] {
        T* dst = img + c * g.H * g.W;
        if (by_rows) {
            simd::run(
                isa,
                [&](int64_t, int64_t) PYCORE_LAMBDA_INLINE {
                    Col2imRows<T>::run(dst, col, ld, c, g, row_width);
                },
                0, 0);
            return;
        }
        if (clear) std::fill(dst, dst + g.H * g.W, T(0));
        for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t h_off = kh * g.dilation_h - g.pad_top;
            int64_t oh_lo, oh_hi;
            valid_range(g.H, g.OH, g.stride_h, h_off, &oh_lo, &oh_hi);
            oh_lo = std::min(std::max(oh_lo, oh_begin), oh_end);
            oh_hi = std::min(std::max(oh_hi, oh_lo), oh_end);
            for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t w_off = kw * g.dilation_w - g.pad_left;
                int64_t ow_lo, ow_hi;
                valid_range(g.W, g.OW, sw, w_off, &ow_lo, &ow_hi);
                ow_lo = std::min(std::max(ow_lo, ow_begin), ow_end) - ow_begin;  // relative to the tile
                ow_hi = std::min(std::max(ow_hi, ow_begin + ow_lo), ow_end) - ow_begin;
                if (ow_hi == ow_lo) continue;
                T* src = col + ((c * g.KH + kh) * g.KW + kw) * ld;
                if (same_width) {
                    if (oh_hi == oh_lo) continue;
                    T* s = src + (oh_lo - oh_begin) * OW;
                    zero_padding_columns(s, oh_hi - oh_lo, OW, ow_lo, ow_hi);
                    const PlaneRun run = plane_run(g, oh_lo, oh_hi, h_off, w_off);
                    add_run(dst + run.start + run.skip, s + run.skip, run.end - run.skip);  // where s was read from
                    continue;
                }
                const int64_t offset = ow_begin * sw + w_off;  // input column: ow*sw + offset
                for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
                    T* d = dst + (oh * g.stride_h + h_off) * g.W;
                    const T* s = src + (oh - oh_begin) * OW;
                    if (sw == 1) {
                        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow + offset] += s[ow];
                    } else {
                        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow * sw + offset] += s[ow];
                    }
                }
            }
        }
    });
    errors.rethrow();
}

// Threads to spread `items` independent work items over, each item then running its GEMMs
// serially. 1 means: take the items one at a time and let the threads work inside each one.
// Whole items per thread need no synchronisation and keep their data in one core's cache,
// so they win whenever the items split evenly enough (three quarters of the thread-time busy).
int item_threads(int64_t items, int64_t work_per_item) {
    const int nt = threads_for(items * work_per_item, kGemmGrain);
    if (nt <= 1 || items < nt) return 1;
    const int64_t per_thread = (items + nt - 1) / nt;
    return 4 * items >= 3 * per_thread * nt ? nt : 1;
}

// ---------------------------------------------------------------------------------------
// forward

// ---------------------------------------------------------------------------------------
// direct forward and weight gradient for few output channels (LeNet: 1 -> 6 and 6 -> 16
// channels, 5x5)
//
// im2col spreads each input value over KH*KW columns (25 for LeNet), and with 6 or 16
// output channels the GEMM does little with each column (M = OC rows of a 12-row tile).
// Instead, all OC channels sit in one vector (a ymm of 8 floats, a zmm of 16, or two ymm
// without AVX-512), and each output position accumulates, over k = (c, kh, kw),
//
//     acc[position][oc] += inp[c, oh*sh + kh*dh, ow*sw + kw*dw] * w_t[k][oc]
//
// reading the input in place (a padded input is copied with its zeros written out, so every
// read is inside the image). kPositions output positions share each weight load. The k
// order is the GEMM's, so the sums are the same (one multiply-add chain per output element). The weight gradient
// turns the same loops around (DirectWeightGrad), and so does the input gradient, by input
// position (DirectInputGrad: only the taps inside the output; as a direct convolution of the
// padded output gradient with the flipped kernel it took 0.98 ms against the GEMM's 0.56 ms
// on LeNet conv2, half its taps reading the zero padding).
// With few channels on wide rows (LeNet conv1) the vectors run along output rows instead:
// "direct forward and weight gradient vectorised along output rows" below, chosen by
// use_direct_rows.

// VB-byte vectors of T (32: AVX2 ymm, 64: AVX-512 zmm; the baseline splits them).
template <typename T, int VB>
struct DirectVec {
#if PYCORE_HAVE_VECTOR_EXTENSIONS
    typedef T type __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias));  // loads need no alignment
#else
    using type = portable::Vec<T, VB / sizeof(T)>;
#endif
    static constexpr int width = VB / sizeof(T);
};

// Output positions per block, by vectors per position: 8 accumulators either way (with
// 12, GCC spilled them to the stack on LeNet conv2 and ran 3x slower).
template <int NV>
constexpr int kPositions = NV == 1 ? 8 : 4;

// One image: out (OC, OH*OW) from img (C, H, W); w_t is (K, NV*width), zero-padded
// channels. Positions are taken P at a time in flat (oh, ow) order, so LeNet conv2's 10-wide
// rows waste nothing (blocks of a row would compute 16 positions for 10); the last block
// ends at OH*OW, overlapping the one before (same sums), which needs OH*OW >= P.
// position_offset[p]: where position p's window starts in a channel, oh*sh*W + ow*sw.
template <typename T, int VB, int NV>
PYCORE_INLINE void direct_image(T* out, const T* img, const T* w_t, const int64_t* position_offset,
                                const Conv2dGeometry& g) {
    using V = typename DirectVec<T, VB>::type;
    constexpr int W = DirectVec<T, VB>::width, P = kPositions<NV>;
    const int64_t plane = g.OH * g.OW;
    for (int64_t block = 0; block < plane; block += P) {
        const int64_t p0 = std::min(block, plane - P);
        int64_t offset[P];
        for (int p = 0; p < P; ++p) offset[p] = position_offset[p0 + p];
        V acc[P][NV];
        for (int p = 0; p < P; ++p)
            for (int v = 0; v < NV; ++v) acc[p][v] = V{};
        const T* wk = w_t;
        for (int64_t c = 0; c < g.C; ++c) {
            for (int64_t kh = 0; kh < g.KH; ++kh) {
                const T* row = img + (c * g.H + kh * g.dilation_h) * g.W;
                for (int64_t kw = 0; kw < g.KW; ++kw, wk += NV * W) {
                    V wv[NV];
                    for (int v = 0; v < NV; ++v) wv[v] = *reinterpret_cast<const V*>(wk + v * W);
                    const T* x = row + kw * g.dilation_w;
#pragma GCC unroll 8
                    for (int p = 0; p < P; ++p) {
                        const T a = x[offset[p]];
#pragma GCC unroll 2
                        for (int v = 0; v < NV; ++v) acc[p][v] += a * wv[v];
                    }
                }
            }
        }
        for (int p = 0; p < P; ++p) {
            alignas(64) T lanes[NV * W];
            std::memcpy(lanes, acc[p], sizeof(lanes));
            for (int64_t oc = 0; oc < g.OC; ++oc) out[oc * plane + p0 + p] = lanes[oc];
        }
    }
}

// position_offset[oh*OW + ow] = oh*sh*W + ow*sw: where an output position's window starts.
std::vector<int64_t> position_offsets(const Conv2dGeometry& g) {
    std::vector<int64_t> offsets(static_cast<size_t>(g.OH * g.OW));
    for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) offsets[oh * g.OW + ow] = oh * g.stride_h * g.W + ow * g.stride_w;
    return offsets;
}

bool rows_applies(const Conv2dGeometry& g, int item_size);

// Whether the channel kernel can take this convolution: every output channel in two
// 32-byte vectors (16 floats, 8 doubles), and a depth K = C*KH*KW the GEMM sums in one slice
// (gemm_k_slice): its one multiply-add chain per output then rounds as the GEMM's (64 -> 16
// channels 3x3, K = 576 against the AVX-512 slice of 512, differed from im2col in the last bit).
inline bool channel_kernel_applies(const Conv2dGeometry& g, int item_size) {
    const int64_t K = g.C * g.KH * g.KW;
    const int64_t slice = item_size == 4 ? gemm_k_slice<float>(K) : gemm_k_slice<double>(K);
    return g.OC <= 64 / item_size && K <= slice;
}

// Whether a direct kernel can take this convolution: one group, at least a block of
// positions, and a kernel for its channels (more than two 32-byte vectors of them: the row
// kernel's forward only; use_direct). And only on the GEMM's instruction set, so that its
// sums round as the GEMM's (FMA or not): a build without simd.h's AVX copies (MSVC) runs the
// direct kernels on the baseline only, so with an AVX2/AVX-512 GEMM it takes im2col instead.
bool direct_applies(const Conv2dGeometry& g, int item_size) {
    const bool gemm_isa = PYCORE_SIMD_HAVE_AVX2 || std::strcmp(gemm_simd_path(), "generic") == 0;
    return gemm_isa && g.groups == 1 && g.OH * g.OW >= kPositions<1> &&
           (channel_kernel_applies(g, item_size) || rows_applies(g, item_size));
}

// The direct kernels read every tap inside the image: a padded convolution runs on a copy
// of the input with its zeros written out, (N, C, H + pad_top + pad_bottom, W + pad_left +
// pad_right), in this thread's buffer 0 (the direct paths use no column buffer), as the
// same convolution without padding (*unpadded). Without padding: inp itself.
template <typename T>
const T* padded_input(const T* inp, const Conv2dGeometry& g, Conv2dGeometry* unpadded) {
    *unpadded = g;
    if (g.pad_top == 0 && g.pad_bottom == 0 && g.pad_left == 0 && g.pad_right == 0) return inp;
    Conv2dGeometry& u = *unpadded;
    u.H = g.H + g.pad_top + g.pad_bottom, u.W = g.W + g.pad_left + g.pad_right;
    u.pad_top = u.pad_bottom = u.pad_left = u.pad_right = 0;
    T* padded = thread_buffer<T>(0, g.N * g.C * u.H * u.W);
    parallel_rows(g.N * g.C, u.H * u.W, kCopyGrain, [=, &g](int64_t p0, int64_t p1) {
        for (int64_t plane = p0; plane < p1; ++plane) {
            T* dst = padded + plane * u.H * u.W;
            const T* src = inp + plane * g.H * g.W;
            std::fill(dst, dst + g.pad_top * u.W, T(0));
            for (int64_t h = 0; h < g.H; ++h) {
                T* row = dst + (h + g.pad_top) * u.W;
                std::fill(row, row + g.pad_left, T(0));
                std::memcpy(row + g.pad_left, src + h * g.W, sizeof(T) * g.W);
                std::fill(row + g.pad_left + g.W, row + u.W, T(0));
            }
            std::fill(dst + (g.pad_top + g.H) * u.W, dst + u.H * u.W, T(0));
        }
    });
    return padded;
}

// Images [n0, n1): direct_image, then the bias and activation while the image is in cache.
template <typename T, int VB, int NV>
struct DirectImages {
    static PYCORE_INLINE void run(T* out, const T* inp, const T* w_t, const int64_t* position_offset,
                                  const GemmEpilogue<T>* epilogue, const Conv2dGeometry& g, int64_t n0, int64_t n1) {
        const int64_t plane = g.OH * g.OW;
        for (int64_t n = n0; n < n1; ++n) {
            T* y = out + n * g.OC * plane;
            direct_image<T, VB, NV>(y, inp + n * g.C * g.H * g.W, w_t, position_offset, g);
            if (epilogue) apply_epilogue(*epilogue, y, plane, 0, 0, g.OC, plane);
        }
    }
};

// dW_t[k][oc] (lanes per k) for k in [k0, k1), summed over every image and output position:
//   dW_t[k][oc] = sum_{n, oh, ow} inp[n, c, oh*sh + kh*dh, ow*sw + kw*dw] * dy_t[n][oh*OW + ow][oc]
// KB values of k at a time, each an accumulator vector over the channels, so each load of
// dy_t serves KB multiply-adds. One chain per k, images then positions in order: the bits
// do not depend on how the k are split between threads.
template <typename T, int VB, int NV>
struct DirectWeightGrad {
    static PYCORE_INLINE void run(T* dw_t, const T* inp, const T* dy_t, const int64_t* position_offset,
                                  const Conv2dGeometry& g, int64_t k0, int64_t k1) {
        using V = typename DirectVec<T, VB>::type;
        constexpr int W = DirectVec<T, VB>::width, KB = kPositions<NV>, lanes = NV * W;
        const int64_t plane = g.OH * g.OW, taps = g.KH * g.KW, image = g.C * g.H * g.W;
        for (int64_t kb = k0; kb < k1; kb += KB) {
            int64_t k_offset[KB];  // where k's window starts in an image; past k1: a repeat of kb's
            for (int j = 0; j < KB; ++j) {
                const int64_t k = kb + j < k1 ? kb + j : kb;
                const int64_t c = k / taps, kh = (k % taps) / g.KW, kw = k % g.KW;
                k_offset[j] = (c * g.H + kh * g.dilation_h) * g.W + kw * g.dilation_w;
            }
            V acc[KB][NV];
            for (int j = 0; j < KB; ++j)
                for (int v = 0; v < NV; ++v) acc[j][v] = V{};
            for (int64_t n = 0; n < g.N; ++n) {
                const T* img = inp + n * image;
                const T* dy = dy_t + n * plane * lanes;
                for (int64_t p = 0; p < plane; ++p, dy += lanes) {
                    V dv[NV];
                    for (int v = 0; v < NV; ++v) dv[v] = *reinterpret_cast<const V*>(dy + v * W);
                    const T* x = img + position_offset[p];
#pragma GCC unroll 8
                    for (int j = 0; j < KB; ++j) {
                        const T a = x[k_offset[j]];
#pragma GCC unroll 2
                        for (int v = 0; v < NV; ++v) acc[j][v] += a * dv[v];
                    }
                }
            }
            for (int64_t j = 0; j < KB && kb + j < k1; ++j)
                std::memcpy(dw_t + (kb + j) * lanes, acc[j], sizeof(acc[j]));
        }
    }
};

// The sum of v's lanes: the two halves added until 16 bytes are left, then those lanes in
// order (a fixed order: the same bits on every call).
template <typename T, int VB>
PYCORE_INLINE T lane_sum(typename DirectVec<T, VB>::type v) {
#if PYCORE_HAVE_VECTOR_EXTENSIONS
    if constexpr (VB > 16) {
        typename DirectVec<T, VB / 2>::type lo, hi;
        std::memcpy(&lo, &v, VB / 2);
        std::memcpy(&hi, reinterpret_cast<const char*>(&v) + VB / 2, VB / 2);
        return lane_sum<T, VB / 2>(lo + hi);
    }
#endif
    constexpr int W = DirectVec<T, VB>::width;
    T lanes[W];
    std::memcpy(lanes, &v, sizeof lanes);
    T total = lanes[0];
    for (int l = 1; l < W; ++l) total += lanes[l];
    return total;
}

// The input gradient of a stride-1, undilated convolution, images [n0, n1), with the output
// channels in vectors as above: for each input position (ih, iw) and channel c,
//   dinp[n, c, ih, iw] = sum over the taps (kh, kw) whose output position
//                        (oh, ow) = (ih + pad_top - kh, iw + pad_left - kw) is inside the output,
//                        of sum_oc dy_t[n][oh*OW + ow][oc] * w_t[(c, kh, kw)][oc]
// Each tap's output-gradient vector serves a block of CB channels' multiply-adds (the
// weights read from L1), and each channel's vector is summed across its lanes once per
// position. This replaces the GEMM into a column matrix (K x positions, each entry a sum
// over only OC products) and col2im's pass over it. Each image is one thread's and the sums
// run in a fixed order: the same bits at any thread count.
template <typename T, int VB, int NV>
struct DirectInputGrad {
    using V = typename DirectVec<T, VB>::type;
    static constexpr int W = DirectVec<T, VB>::width, lanes = NV * W;

    // Channels [c0, c0 + CB) of one image: dx (its plane c0), dy its dy_t, w_c channel c0's weights.
    template <int CB>
    static PYCORE_INLINE void channel_block(T* dx, const T* dy, const T* w_c, const Conv2dGeometry& g) {
        const int64_t taps = g.KH * g.KW, in_plane = g.H * g.W;
        for (int64_t ih = 0; ih < g.H; ++ih) {
            // the taps kh whose output row oh = ih + pad_top - kh lies in [0, OH)
            const int64_t kh_lo = std::max<int64_t>(0, ih + g.pad_top - g.OH + 1);
            const int64_t kh_hi = std::min<int64_t>(g.KH, ih + g.pad_top + 1);
            for (int64_t iw = 0; iw < g.W; ++iw) {
                const int64_t kw_lo = std::max<int64_t>(0, iw + g.pad_left - g.OW + 1);
                const int64_t kw_hi = std::min<int64_t>(g.KW, iw + g.pad_left + 1);
                V acc[CB][NV];
                for (int j = 0; j < CB; ++j)
                    for (int v = 0; v < NV; ++v) acc[j][v] = V{};
                for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
                    // tap kw reads output column iw + pad_left - kw: one position left per kw
                    const T* d = dy + ((ih + g.pad_top - kh) * g.OW + iw + g.pad_left - kw_lo) * lanes;
                    const T* wk = w_c + (kh * g.KW + kw_lo) * lanes;
                    for (int64_t kw = kw_lo; kw < kw_hi; ++kw, d -= lanes, wk += lanes) {
                        V dv[NV];
                        for (int v = 0; v < NV; ++v) dv[v] = *reinterpret_cast<const V*>(d + v * W);
#pragma GCC unroll 6
                        for (int j = 0; j < CB; ++j)
#pragma GCC unroll 2
                            for (int v = 0; v < NV; ++v)
                                acc[j][v] += dv[v] * *reinterpret_cast<const V*>(wk + j * taps * lanes + v * W);
                    }
                }
                for (int j = 0; j < CB; ++j) {
                    V total = acc[j][0];
                    for (int v = 1; v < NV; ++v) total += acc[j][v];
                    dx[j * in_plane + ih * g.W + iw] = lane_sum<T, VB>(total);
                }
            }
        }
    }

    // Blocks of 6 channels (6 x NV accumulators and NV output-gradient vectors: 14 of AVX2's
    // 16 ymm for LeNet conv2's 16 output channels, its 6 input channels in one block), the
    // rest in blocks of 3, 2 and 1, so that no accumulator computes a channel twice.
    static PYCORE_INLINE void run(T* dinp, const T* dy_t, const T* w_t, const Conv2dGeometry& g, int64_t n0,
                                  int64_t n1) {
        const int64_t plane = g.OH * g.OW, taps = g.KH * g.KW, in_plane = g.H * g.W;
        for (int64_t n = n0; n < n1; ++n) {
            const T* dy = dy_t + n * plane * lanes;
            for (int64_t c0 = 0; c0 < g.C;) {
                T* dx = dinp + (n * g.C + c0) * in_plane;
                const T* w_c = w_t + c0 * taps * lanes;
                const int64_t left = g.C - c0;
                const int cb = left >= 6 ? 6 : left >= 3 ? 3 : int(left);
                if (cb == 6)
                    channel_block<6>(dx, dy, w_c, g);
                else if (cb == 3)
                    channel_block<3>(dx, dy, w_c, g);
                else if (cb == 2)
                    channel_block<2>(dx, dy, w_c, g);
                else
                    channel_block<1>(dx, dy, w_c, g);
                c0 += cb;
            }
        }
    }
};

// The instruction set of the direct kernels, chosen once per call, and `lanes`, the
// channels padded to 8 or 16 floats (4 or 8 doubles; the ones past OC zero): one ymm, or
// for more channels one zmm (AVX-512) or two ymm (AVX2 and the baseline).
struct DirectIsa {
    bool avx512, avx2;
    int64_t lanes;
};

template <typename T>
DirectIsa direct_isa(int64_t channels) {
    const bool avx512 = PYCORE_SIMD_HAVE_AVX2 && std::strcmp(gemm_simd_path(), "avx512f") == 0;
    const int64_t lanes = channels > int64_t(32 / sizeof(T)) ? 64 / sizeof(T) : 32 / sizeof(T);
    return DirectIsa{avx512, simd::use_avx2(), lanes};
}

// Job<T, VB, NV>::run(args...) compiled for isa (always inlined into the ISA's copy).
template <template <typename, int, int> class Job, typename T, class... Args>
void run_direct(const DirectIsa& isa, const Args&... args) {
#if PYCORE_SIMD_HAVE_AVX2
    if (isa.avx512) {
        // The AVX-512 copy (simd.h): one zmm holds all 16 channels.
        simd::run_avx512(
            [&](int64_t, int64_t) PYCORE_LAMBDA_INLINE {
                if (isa.lanes * int64_t(sizeof(T)) == 64)
                    Job<T, 64, 1>::run(args...);
                else
                    Job<T, 32, 1>::run(args...);
            },
            0, 0);
        return;
    }
#endif
    simd::run(
        isa.avx2 ? simd::Isa::avx2 : simd::Isa::baseline,
        [&](int64_t, int64_t) PYCORE_LAMBDA_INLINE {
            if (isa.lanes * int64_t(sizeof(T)) == 64)
                Job<T, 32, 2>::run(args...);
            else
                Job<T, 32, 1>::run(args...);
        },
        0, 0);
}

// ---------------------------------------------------------------------------------------
// direct forward and weight gradient vectorised along output rows (LeNet conv1: 1 -> 6
// channels, 28-wide output rows)
//
// With few output channels the channel vector above is mostly empty (LeNet conv1: 6 of a
// ymm's 8 lanes, and the AVX-512 path has 16), and every multiply-add loads and broadcasts
// one input value. Here a vector holds W consecutive output columns of one row instead
// (stride_w 1):
//
//     acc[oc][ow .. ow+W) += w[oc][k] * inp[c, oh*sh + kh*dh, ow + kw*dw .. + W)
//
// so one unaligned load of an input row serves every output channel, and one broadcast
// weight serves every vector of the block (R rows x CV vectors). A row's last vector ends
// at OW, overlapping the one before it where W does not divide OW (28 = 16 + 12 on
// AVX-512, 4 columns computed twice with the same sums; nothing is read past the row). The
// k order and the zero start are the GEMM's, so the forward bits are the im2col path's and
// the channel kernel's. The weight gradient holds OCB x KB (channel, tap) sums as vectors
// along the row and adds their lanes at the end (DirectRowsWeightGrad). LeNet conv1's
// forward kernel alone (padded input, 64 images, AVX-512): 0.17 ms, ~100 GFLOP/s of
// multiply-adds issued (88 useful) against this core's 128; the channel kernel's ~15.
// With more than 16 channels (the channel kernel's limit) it takes 3x3 layers' forwards
// from im2col + GEMM where it measured faster: rows_wins_over_im2col.

// Output channels per block of the row kernels: LeNet's 6 exactly, else 4 or 8 (the
// weights of the channels past OC are zero, their outputs never stored).
// More than 16 channels (only the row kernel takes those): 8 on AVX-512 (2 x 8 zmm
// accumulators for a 17..32-wide row), 6 with 16 registers (2 x 6 ymm).
inline int64_t rows_channel_block(int vector_bytes, int64_t channels) {
    if (channels > 16) return vector_bytes == 64 ? 8 : 6;
    return channels <= 4 ? 4 : channels <= 6 ? 6 : 8;
}

// A block of R output rows x CV vectors x OCB channels in accumulators: 24 of AVX-512's 32
// registers for 6 channels (2 rows x 2 zmm: a 28-wide row), 12 of AVX2's 16 (1 row x 2 ymm),
// at most 16 otherwise, so that the loads and the broadcast weight still fit.
template <int VB, int OCB>
struct RowsBlocking {
    static constexpr int CV = VB == 64 || OCB <= 6 ? 2 : 1;
    static constexpr int R = VB == 64 && OCB <= 6 ? 2 : 1;
};

// One block of R output rows from oh0 and CV vectors from vector v0, OCB channels from
// oc0 (w_b: the block's (K, OCB) weights, zero past OC; `channels` of them stored): the
// sums over k in the GEMM's order, written to out (OC, OH, OW). A vector starts at column
// v*W, the row's last one at OW - W (overlapping the one before it where W does not
// divide OW: the same sums, written twice). img holds the input from row in_row0 on (a
// tile's copied rows, or the whole image from 0). K longer than the GEMM's slices
// (k_slice: gemm_k_slice) is summed slice by slice, each from zero, and the slices added
// in order, as the GEMM adds each slice's product into C.
template <typename T, int VB, int OCB, int CV, int R, bool Sliced>
PYCORE_INLINE void rows_block(T* out, const T* img, const T* w_b, const int64_t* tap_offset,
                              const Conv2dGeometry& g, int64_t k_slice, int64_t in_row0, int64_t oc0,
                              int64_t channels, int64_t oh0, int64_t v0) {
    using V = typename DirectVec<T, VB>::type;
    constexpr int W = DirectVec<T, VB>::width;
    int64_t col[CV];  // each vector's first output column
    for (int j = 0; j < CV; ++j) col[j] = std::min((v0 + j) * W, g.OW - W);
    const T* at[R][CV];  // each vector's window start
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < CV; ++j) at[i][j] = img + ((oh0 + i) * g.stride_h - in_row0) * g.W + col[j];
    // acc = the sums over taps [k0, k1), from zero.
    const auto sum_taps = [&](int64_t k0, int64_t k1, V (&acc)[R][OCB][CV]) PYCORE_LAMBDA_INLINE {
        for (int i = 0; i < R; ++i)
            for (int oc = 0; oc < OCB; ++oc)
                for (int j = 0; j < CV; ++j) acc[i][oc][j] = V{};
        // One tap: its input vectors times its OCB weights.
        const auto add_tap = [&](int64_t shift, const T* wk) PYCORE_LAMBDA_INLINE {
            V x[R][CV];
            for (int i = 0; i < R; ++i)
                for (int j = 0; j < CV; ++j) x[i][j] = *reinterpret_cast<const V*>(at[i][j] + shift);
#pragma GCC unroll 8
            for (int oc = 0; oc < OCB; ++oc) {
                const T w = wk[oc];
                for (int i = 0; i < R; ++i)
                    for (int j = 0; j < CV; ++j) acc[i][oc][j] += w * x[i][j];
            }
        };
        // Pointer steps, not an index: with an index the window pointers no longer fitted
        // in registers around LeNet conv1's 24 accumulators (kernel 7-10% slower).
        const int64_t *tap = tap_offset + k0, *tap_end = tap_offset + k1;
        const T* wk = w_b + k0 * OCB;
        if constexpr (R * OCB * CV >= 24) {
            // 24 accumulators (LeNet conv1 on AVX-512): unrolled, it took 4-6% longer.
            for (; tap != tap_end; ++tap, wk += OCB) add_tap(*tap, wk);
        } else {
            // Unrolled: the tap's offset, pointer steps and loop test were 6 of AVX2's 25
            // instructions per 12 multiply-adds (callgrind, (4,32,28,28) -> 64 3x3: 20.0M ->
            // 18.1M, (2,64,32,32) -> 128: 45.6M -> 41.2M).
#pragma GCC unroll 4
            for (; tap != tap_end; ++tap, wk += OCB) add_tap(*tap, wk);
        }
    };
    const int64_t K = g.C * g.KH * g.KW;
    V total[R][OCB][CV];
    sum_taps(0, Sliced ? k_slice : K, total);
    // Later slices: their own sums, added to the total in order (as the GEMM adds each into C).
    // Sliced only where K > k_slice: the extra registers cost LeNet conv1's 24-accumulator
    // blocks 7% (AVX-512) even when the loop did not run.
    for (int64_t k0 = k_slice; Sliced && k0 < K; k0 += k_slice) {
        V acc[R][OCB][CV];
        sum_taps(k0, std::min(K, k0 + k_slice), acc);
        for (int i = 0; i < R; ++i)
            for (int oc = 0; oc < OCB; ++oc)
                for (int j = 0; j < CV; ++j) total[i][oc][j] = acc[i][oc][j] + total[i][oc][j];
    }
    // Locals: the geometry read through g would be read again after every store.
    const int64_t OW = g.OW, plane = g.OH * OW;
    T* const y = out + oc0 * plane + oh0 * OW;
    for (int i = 0; i < R; ++i)
        for (int64_t oc = 0; oc < channels; ++oc)
            for (int j = 0; j < CV; ++j) std::memcpy(y + oc * plane + i * OW + col[j], &total[i][oc][j], sizeof(V));
}

// Output rows [oh_begin, oh_end) of one image: out (OC, OH, OW) from img (C, H, W),
// stride_w 1, OW >= W; w_b is (OC/OCB blocks, K, OCB). For each channel block, blocks of R
// rows x CV vectors, then the rows and vectors left over one at a time (AVX2 on a 24-wide
// row: 2 + 1 ymm, not 2 + 2 overlapping). The tile's input rows stay in L1 while every
// channel block passes over them (rows_tile_rows).
template <typename T, int VB, int OCB, bool Sliced>
PYCORE_INLINE void rows_tile(T* out, const T* img, const T* w_b, const int64_t* tap_offset, const Conv2dGeometry& g,
                             int64_t k_slice, int64_t in_row0, int64_t oh_begin, int64_t oh_end) {
    constexpr int W = DirectVec<T, VB>::width, CV = RowsBlocking<VB, OCB>::CV, R = RowsBlocking<VB, OCB>::R;
    const int64_t K = g.C * g.KH * g.KW, vectors = (g.OW + W - 1) / W;
    const int64_t rows_r = oh_begin + (oh_end - oh_begin) / R * R, vectors_cv = vectors / CV * CV;
    for (int64_t oc0 = 0; oc0 < g.OC; oc0 += OCB, w_b += K * OCB) {
        const int64_t channels = std::min<int64_t>(OCB, g.OC - oc0);
        for (int64_t oh = oh_begin; oh < oh_end; oh += oh < rows_r ? R : 1) {
            for (int64_t v = 0; v < vectors; v += v < vectors_cv ? CV : 1) {
                if (oh < rows_r && v < vectors_cv)
                    rows_block<T, VB, OCB, CV, R, Sliced>(out, img, w_b, tap_offset, g, k_slice, in_row0, oc0, channels, oh, v);
                else if (oh < rows_r)
                    rows_block<T, VB, OCB, 1, R, Sliced>(out, img, w_b, tap_offset, g, k_slice, in_row0, oc0, channels, oh, v);
                else if (v < vectors_cv)
                    rows_block<T, VB, OCB, CV, 1, Sliced>(out, img, w_b, tap_offset, g, k_slice, in_row0, oc0, channels, oh, v);
                else
                    rows_block<T, VB, OCB, 1, 1, Sliced>(out, img, w_b, tap_offset, g, k_slice, in_row0, oc0, channels, oh, v);
            }
        }
    }
}

// Where the row kernel's forward reads its input: the images themselves (no padding), or
// for a padded convolution each tile's input rows copied with their zeros into this
// thread's buffer (C, in_rows, W + pad_left + pad_right), in L1 or L2 as the tile's channel
// blocks pass over it. (With padded_input's copy of the whole batch the row kernel took
// 4.5-6% longer on the 3x3 p1 forwards of bench_conv.py than on the same input padded
// beforehand: (64,32,28,28) 30.7 against 28.9 ms, AVX-512, 1 thread.)
//   g: the convolution; tile: the kernel's view of one image's input (H: in_rows when
//   copied; W: the padded width; no padding), tile_rows output rows per tile.
template <typename T>
struct RowsInput {
    const T* inp;
    Conv2dGeometry g, tile;
    int64_t tile_rows;
    bool copied;
};

// Rows [r0, r0 + rows) of image n's padded input, every channel, into dst (C, tile.H, tile.W).
template <typename T>
void copy_padded_rows(T* dst, const RowsInput<T>& in, int64_t n, int64_t r0, int64_t rows) {
    const Conv2dGeometry& g = in.g;
    const int64_t width = in.tile.W;
    for (int64_t c = 0; c < g.C; ++c) {
        const T* src = in.inp + (n * g.C + c) * g.H * g.W;
        for (int64_t r = 0; r < rows; ++r) {
            T* row = dst + (c * in.tile.H + r) * width;
            const int64_t h = r0 + r - g.pad_top;
            if (h < 0 || h >= g.H) {
                std::fill(row, row + width, T(0));
                continue;
            }
            std::fill(row, row + g.pad_left, T(0));
            std::memcpy(row + g.pad_left, src + h * g.W, sizeof(T) * g.W);
            std::fill(row + g.pad_left + g.W, row + width, T(0));
        }
    }
}

// Tiles [t0, t1) of in.tile_rows output rows, tile t = n * tiles_per_image + (its place in
// image n): rows_tile for the block size of OC, then the bias and activation while the
// tile's outputs are in cache. buffer: this thread's, for the copied rows.
template <typename T, int VB>
struct DirectRowsTiles {
    static PYCORE_INLINE void run(T* out, const RowsInput<T>& in, const T* w_b, const int64_t* tap_offset,
                                  const GemmEpilogue<T>* epilogue, int64_t k_slice, T* buffer, int64_t t0,
                                  int64_t t1) {
        const Conv2dGeometry& g = in.tile;
        const int64_t plane = g.OH * g.OW, ocb = rows_channel_block(VB, g.OC);
        const int64_t tiles_per_image = (g.OH + in.tile_rows - 1) / in.tile_rows;
        const int64_t reach = (g.KH - 1) * g.dilation_h + 1;
        const bool sliced = g.C * g.KH * g.KW > k_slice;
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n = t / tiles_per_image, oh0 = t % tiles_per_image * in.tile_rows;
            const int64_t oh1 = std::min(g.OH, oh0 + in.tile_rows);
            T* y = out + n * g.OC * plane;
            const T* img = in.inp + n * g.C * g.H * g.W;
            int64_t in_row0 = 0;
            if (in.copied) {
                in_row0 = oh0 * g.stride_h;
                copy_padded_rows(buffer, in, n, in_row0, (oh1 - 1 - oh0) * g.stride_h + reach);
                img = buffer;
            }
            if (ocb == 4 && !sliced)
                rows_tile<T, VB, 4, false>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            else if (ocb == 4)
                rows_tile<T, VB, 4, true>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            else if (ocb == 6 && !sliced)
                rows_tile<T, VB, 6, false>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            else if (ocb == 6)
                rows_tile<T, VB, 6, true>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            else if (!sliced)
                rows_tile<T, VB, 8, false>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            else
                rows_tile<T, VB, 8, true>(y, img, w_b, tap_offset, g, k_slice, in_row0, oh0, oh1);
            if (epilogue) apply_epilogue(*epilogue, y + oh0 * g.OW, plane, 0, 0, g.OC, (oh1 - oh0) * g.OW);
        }
    }
};

// Zeroes a vector's first `skip` lanes (a row's last vector, whose first lanes the
// vector before it has counted): a bit mask, so that an inf or NaN in a skipped lane
// cannot leak into the sum as inf * 0.
template <typename T, int VB>
struct SkipLanes {
    using V = typename DirectVec<T, VB>::type;
    static constexpr int W = DirectVec<T, VB>::width;
#if PYCORE_HAVE_VECTOR_EXTENSIONS
    typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> Bits __attribute__((vector_size(VB)));
    Bits keep;
    explicit SkipLanes(int skip) {
        for (int i = 0; i < W; ++i) keep[i] = i < skip ? 0 : -1;
    }
    PYCORE_INLINE void operator()(V& v) const { v = reinterpret_cast<V>(reinterpret_cast<Bits>(v) & keep); }
#else
    int skip;
    explicit SkipLanes(int s) : skip(s) {}
    PYCORE_INLINE void operator()(V& v) const {
        for (int i = 0; i < skip; ++i) v[i] = T(0);
    }
#endif
};

// Weight-gradient blocks of the row kernel: OCB channels x KB taps of vector sums, with
// the OCB output-gradient vectors of a position and an input vector in registers too: on
// AVX-512 24 + 6 + 1 of the 32 for 5 or 6 channels, else 4 x 5 (a 5x5 kernel's row of
// taps); with 16 registers 12 + 3 + 1. Measured on LeNet conv1's weight gradient (kernel
// alone, best of 300, this Xeon, 28/24-wide rows): AVX-512 6 x 4 0.26 / 0.23 ms, 3 x 5
// 0.31 / 0.28; before dy_rows also 6 x 5 (spills) 0.34 / 0.29 against 6 x 4's 0.33 / 0.25,
// and on AVX2 3 x 4 0.44 / 0.27 against 2 x 5's 0.56 / 0.32.
struct RowsGradBlock {
    int64_t channels, taps;
};
inline RowsGradBlock rows_grad_block(int vector_bytes, int64_t channels) {
    if (vector_bytes < 64) return {3, 4};
    return channels > 4 && channels <= 6 ? RowsGradBlock{6, 4} : RowsGradBlock{4, 5};
}

// dweight[oc][k] += sum_{n, oh, ow} inp[n, c, oh*sh + kh*dh, ow + kw*dw] * dout[n, oc, oh, ow]
// for blocks [b0, b1) of (channel block, tap block), b = ob * k_blocks + kb: vector sums
// along the rows (lanes: ow mod W), each over images, then rows, then a row's vectors in
// order, kept in state (this thread's, (b1 - b0) x OCB x KB x W) between images, so that
// an image's input and output gradient stay in L1 while every block passes over them; the
// lanes are added in order at the end. The bits depend on the vector width, not on how the
// blocks are split between threads. Taps past K repeat the last one.
// Each image's output gradient is first copied into dy_rows (OH, vectors, OCp, W), OCp the
// channels rounded up to blocks (zeros past OC), the last vector's skipped lanes zeroed: a
// block then reads its OCB vectors at fixed offsets from one pointer, not from six channel
// pointers that GCC kept on the stack and masked loads (kernel alone on LeNet conv1,
// AVX-512, best of 300: 0.33 -> 0.26 ms; AVX2 0.45 -> 0.39 ms).
template <typename T, int VB, int OCB, int KB>
PYCORE_INLINE void rows_weight_grad(T* dweight, const T* inp, const T* dout, T* state, T* dy_rows,
                                    const Conv2dGeometry& g, int64_t b0, int64_t b1) {
    using V = typename DirectVec<T, VB>::type;
    constexpr int W = DirectVec<T, VB>::width;
    const int64_t plane = g.OH * g.OW, K = g.C * g.KH * g.KW, taps = g.KH * g.KW, image = g.C * g.H * g.W;
    const int64_t k_blocks = (K + KB - 1) / KB, channels = (g.OC + OCB - 1) / OCB * OCB;
    const int64_t vectors = (g.OW + W - 1) / W, full = g.OW / W;  // full: vectors at multiples of W
    const int skipped = static_cast<int>(vectors * W - g.OW);      // the last vector's, at OW - W
    const SkipLanes<T, VB> skip(skipped);
    std::fill(state, state + (b1 - b0) * OCB * KB * W, T(0));
    for (int64_t n = 0; n < g.N; ++n) {
        // Vector loads and stores (std::fill/memcpy of W - skipped lanes were libc calls: 14% of it).
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t v = 0; v < vectors; ++v)
                for (int64_t oc = 0; oc < channels; ++oc) {
                    V d{};
                    if (oc < g.OC) {
                        d = *reinterpret_cast<const V*>(dout + (n * g.OC + oc) * plane + oh * g.OW +
                                                        std::min(v * W, g.OW - W));
                        if (v == full) skip(d);
                    }
                    std::memcpy(dy_rows + ((oh * vectors + v) * channels + oc) * W, &d, sizeof(V));
                }
        const T* img = inp + n * image;
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t oc0 = b / k_blocks * OCB, k0 = b % k_blocks * KB;
            int64_t k_offset[KB];  // where tap k's window starts in an image
            for (int j = 0; j < KB; ++j) {
                const int64_t k = std::min(k0 + j, K - 1), c = k / taps, kh = (k % taps) / g.KW, kw = k % g.KW;
                k_offset[j] = (c * g.H + kh * g.dilation_h) * g.W + kw * g.dilation_w;
            }
            T* sums = state + (b - b0) * OCB * KB * W;
            V acc[OCB][KB];
            std::memcpy(acc, sums, sizeof(acc));
            // One position vector: the output gradients of its OCB channels times KB input vectors.
            auto add = [&](const T* dy, const T* x_at, auto masked) PYCORE_LAMBDA_INLINE {
                V d[OCB];
                for (int i = 0; i < OCB; ++i) d[i] = *reinterpret_cast<const V*>(dy + i * W);
#pragma GCC unroll 8
                for (int j = 0; j < KB; ++j) {
                    V x = *reinterpret_cast<const V*>(x_at + k_offset[j]);
                    if constexpr (decltype(masked)::value) skip(x);
                    for (int i = 0; i < OCB; ++i) acc[i][j] += x * d[i];
                }
            };
            const T* dy = dy_rows + oc0 * W;
            for (int64_t oh = 0; oh < g.OH; ++oh) {
                const T* x_row = img + oh * g.stride_h * g.W;
                for (int64_t v = 0; v < full; ++v, dy += channels * W) add(dy, x_row + v * W, std::false_type{});
                if (full < vectors) {
                    add(dy, x_row + g.OW - W, std::true_type{});
                    dy += channels * W;
                }
            }
            std::memcpy(sums, acc, sizeof(acc));
        }
    }
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t oc0 = b / k_blocks * OCB, k0 = b % k_blocks * KB;
        const T* sums = state + (b - b0) * OCB * KB * W;
        for (int64_t i = 0; i < OCB && oc0 + i < g.OC; ++i)
            for (int64_t j = 0; j < KB && k0 + j < K; ++j) {
                const T* lanes = sums + (i * KB + j) * W;
                T total = lanes[0];
                for (int l = 1; l < W; ++l) total += lanes[l];
                dweight[(oc0 + i) * K + k0 + j] += total;
            }
    }
}

template <typename T, int VB>
struct DirectRowsWeightGrad {
    static PYCORE_INLINE void run(T* dweight, const T* inp, const T* dout, T* state, T* dy_rows,
                                  const Conv2dGeometry& g, int64_t b0, int64_t b1) {
        if (VB < 64)
            rows_weight_grad<T, VB, 3, 4>(dweight, inp, dout, state, dy_rows, g, b0, b1);
        else if (rows_grad_block(VB, g.OC).channels == 6)
            rows_weight_grad<T, VB, 6, 4>(dweight, inp, dout, state, dy_rows, g, b0, b1);
        else
            rows_weight_grad<T, VB, 4, 5>(dweight, inp, dout, state, dy_rows, g, b0, b1);
    }
};

// Job<T, VB>::run(args...) on the row kernels' vectors: a zmm (AVX-512), a ymm (AVX2), 16
// bytes on the baseline (SSE2's 16 xmm registers; the blockings above count 16).
template <template <typename, int> class Job, typename T, class... Args>
void run_rows(simd::Isa isa, const Args&... args) {
#if PYCORE_SIMD_HAVE_AVX2
    if (isa == simd::Isa::avx512)
        return simd::run_avx512([&](int64_t, int64_t) PYCORE_LAMBDA_INLINE { Job<T, 64>::run(args...); }, 0, 0);
    if (isa == simd::Isa::avx2)
        return simd::run_avx2([&](int64_t, int64_t) PYCORE_LAMBDA_INLINE { Job<T, 32>::run(args...); }, 0, 0);
#endif
    simd::run_baseline([&](int64_t, int64_t) PYCORE_LAMBDA_INLINE { Job<T, 16>::run(args...); }, 0, 0);
}

// The row kernels' vector size in bytes on isa.
inline int rows_vector_bytes(simd::Isa isa) { return isa == simd::Isa::avx512 ? 64 : isa == simd::Isa::avx2 ? 32 : 16; }

// Whether the row kernels can take this (direct_applies) convolution: stride_w 1 (a vector
// is consecutive columns) and output rows of one vector or more.
bool rows_applies(const Conv2dGeometry& g, int item_size) {
    return g.stride_w == 1 && g.OW >= rows_vector_bytes(simd::current_isa()) / item_size;
}

// Output rows per tile of the row kernel's forward: as many as keep the input rows they read
// (every channel's, w_padded wide) within kRowsTileBytes, at least one, whole images where
// they fit (LeNet).
constexpr int64_t kRowsTileBytes = int64_t(1) << 15;
int64_t rows_tile_rows(const Conv2dGeometry& g, int64_t w_padded, int64_t item_size) {
    const int64_t input_row = g.C * w_padded * item_size, reach = (g.KH - 1) * g.dilation_h + 1;
    int64_t rows = 1;
    while (rows < g.OH && (rows * g.stride_h + reach) * input_row <= kRowsTileBytes) ++rows;
    return rows;
}

// The row kernel's forward of the convolution g (padded or not: RowsInput).
template <typename T>
void direct_rows_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g,
                         Activation activation, T negative_slope) {
    const int64_t K = g.C * g.KH * g.KW;
    const simd::Isa isa = simd::current_isa();
    const int64_t ocb = rows_channel_block(rows_vector_bytes(isa), g.OC), blocks = (g.OC + ocb - 1) / ocb;
    // w_b[block][k][oc % ocb] = weight[oc][k], channels past OC zero.
    std::vector<T> w_b(static_cast<size_t>(blocks * K * ocb), T(0));
    for (int64_t oc = 0; oc < g.OC; ++oc)
        for (int64_t k = 0; k < K; ++k) w_b[(oc / ocb * K + k) * ocb + oc % ocb] = weight[oc * K + k];
    const GemmEpilogue<T> e{bias, nullptr, activation, negative_slope};
    const GemmEpilogue<T>* epilogue = bias != nullptr || activation != Activation::kNone ? &e : nullptr;

    RowsInput<T> in{inp, g, g, 0, g.pad_top || g.pad_bottom || g.pad_left || g.pad_right};
    Conv2dGeometry& tile = in.tile;
    tile.W = g.W + g.pad_left + g.pad_right;
    tile.pad_top = tile.pad_bottom = tile.pad_left = tile.pad_right = 0;
    in.tile_rows = rows_tile_rows(g, tile.W, sizeof(T));
    if (in.copied) tile.H = (in.tile_rows - 1) * g.stride_h + (g.KH - 1) * g.dilation_h + 1;
    // tap_offset[k] = (c*H + kh*dh)*W + kw*dw: where tap k's input sits from a window's start.
    std::vector<int64_t> tap_offsets(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) {
        const int64_t c = k / (g.KH * g.KW), kh = k / g.KW % g.KH, kw = k % g.KW;
        tap_offsets[k] = (c * tile.H + kh * g.dilation_h) * tile.W + kw * g.dilation_w;
    }
    const T* wb = w_b.data();
    const int64_t* tap_offset = tap_offsets.data();
    const int64_t k_slice = gemm_k_slice<T>(K);
    const int64_t tiles = g.N * ((g.OH + in.tile_rows - 1) / in.tile_rows);
    const int64_t buffer_size = in.copied ? g.C * tile.H * tile.W : 0;
    parallel_rows(tiles, g.OC * in.tile_rows * g.OW * K, kGemmGrain, [&](int64_t t0, int64_t t1) {
        T* buffer = in.copied ? thread_buffer<T>(0, buffer_size) : nullptr;
        run_rows<DirectRowsTiles, T>(isa, out, in, wb, tap_offset, epilogue, k_slice, buffer, t0, t1);
    });
}

// dweight (OC, K) += the row kernel's weight gradient. Threads take whole (channel block,
// tap block) pairs, each with its sums in its own buffer 2 and the image's output gradient
// rows in buffer 3.
template <typename T>
void direct_rows_weight_grad(T* dweight, const T* dout, const T* inp, const Conv2dGeometry& g) {
    const int64_t K = g.C * g.KH * g.KW, plane = g.OH * g.OW;
    const simd::Isa isa = simd::current_isa();
    const int vector_bytes = rows_vector_bytes(isa);
    const RowsGradBlock block = rows_grad_block(vector_bytes, g.OC);
    const int64_t blocks = (g.OC + block.channels - 1) / block.channels * ((K + block.taps - 1) / block.taps);
    const int64_t width = vector_bytes / int64_t(sizeof(T)), state_per_block = block.channels * block.taps * width;
    const int64_t dy_rows_size = g.OH * ((g.OW + width - 1) / width * width) *
                                 ((g.OC + block.channels - 1) / block.channels * block.channels);
    parallel_rows(blocks, g.N * plane * block.channels * block.taps, kGemmGrain, [&](int64_t b0, int64_t b1) {
        T* state = thread_buffer<T>(2, (b1 - b0) * state_per_block);
        T* dy_rows = thread_buffer<T>(3, dy_rows_size);
        run_rows<DirectRowsWeightGrad, T>(isa, dweight, inp, dout, state, dy_rows, g, b0, b1);
    });
}

// w_t (K, lanes) = the weight (OC, K) transposed, channels past OC zero: the channel
// kernels' forward and input gradient read one k's channels as one or two vectors.
template <typename T>
void channels_last_weight(T* w_t, const T* weight, const Conv2dGeometry& g, int64_t lanes) {
    const int64_t K = g.C * g.KH * g.KW;
    std::fill(w_t, w_t + K * lanes, T(0));
    for (int64_t oc = 0; oc < g.OC; ++oc)
        for (int64_t k = 0; k < K; ++k) w_t[k * lanes + oc] = weight[oc * K + k];
}

template <typename T>
void direct_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g,
                    Activation activation, T negative_slope) {
    const int64_t K = g.C * g.KH * g.KW, plane = g.OH * g.OW;
    const DirectIsa isa = direct_isa<T>(g.OC);
    std::vector<T> w_t(static_cast<size_t>(K * isa.lanes));
    channels_last_weight(w_t.data(), weight, g, isa.lanes);
    const GemmEpilogue<T> e{bias, nullptr, activation, negative_slope};
    const GemmEpilogue<T>* epilogue = bias != nullptr || activation != Activation::kNone ? &e : nullptr;
    const T* wt = w_t.data();
    const std::vector<int64_t> position_offset = position_offsets(g);
    const int64_t* offsets = position_offset.data();
    parallel_rows(g.N, g.OC * plane * K, kGemmGrain, [&](int64_t n0, int64_t n1) {
        run_direct<DirectImages, T>(isa, out, inp, wt, offsets, epilogue, g, n0, n1);
    });
}

// dout (N, OC, OH*OW) transposed into this thread's buffer 2 as dy_t (N, OH*OW, lanes),
// channels last (those past OC zero), so that one vector load takes every channel of a
// position: the channel kernels' weight and input gradients read it.
template <typename T>
const T* channels_last_dout(const T* dout, const Conv2dGeometry& g, int64_t lanes) {
    const int64_t plane = g.OH * g.OW;
    T* dyt = thread_buffer<T>(2, g.N * plane * lanes);
    parallel_rows(g.N, g.OC * plane, kCopyGrain, [=, &g](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const T* src = dout + n * g.OC * plane;
            T* dst = dyt + n * plane * lanes;
            for (int64_t p = 0; p < plane; ++p, dst += lanes)
                for (int64_t oc = 0; oc < lanes; ++oc) dst[oc] = oc < g.OC ? src[oc * plane + p] : T(0);
        }
    });
    return dyt;
}

// dweight (OC, K) += the direct kernel's weight gradient, from channels_last_dout's dy_t.
// Threads take whole blocks of k.
template <typename T>
void direct_weight_grad(T* dweight, const T* dy_t, const T* inp, const Conv2dGeometry& g) {
    const int64_t K = g.C * g.KH * g.KW, plane = g.OH * g.OW;
    const DirectIsa isa = direct_isa<T>(g.OC);
    const int64_t lanes = isa.lanes;
    // This thread's buffer (parallel.h): a training step's repeated calls do not allocate.
    T* dwt = thread_buffer<T>(3, K * lanes);
    const std::vector<int64_t> position_offset = position_offsets(g);
    const int64_t block = kPositions<1>;  // k per block (a multiple of both jobs' KB)
    const int64_t blocks = (K + block - 1) / block;
    const int64_t* offsets = position_offset.data();
    parallel_rows(blocks, g.N * plane * block * g.OC, kGemmGrain, [&](int64_t b0, int64_t b1) {
        run_direct<DirectWeightGrad, T>(isa, dwt, inp, dy_t, offsets, g, b0 * block, std::min(K, b1 * block));
    });
    for (int64_t oc = 0; oc < g.OC; ++oc)
        for (int64_t k = 0; k < K; ++k) dweight[oc * K + k] += dwt[k * lanes + oc];
}

// dinp (N, C, H, W) = the direct kernel's input gradient (DirectInputGrad), from
// channels_last_dout's dy_t; threads take whole images.
template <typename T>
void direct_input_grad(T* dinp, const T* dy_t, const T* weight, const Conv2dGeometry& g) {
    const int64_t K = g.C * g.KH * g.KW;
    const DirectIsa isa = direct_isa<T>(g.OC);
    T* w_t = thread_buffer<T>(3, K * isa.lanes);  // this thread's buffer 3 (parallel.h)
    channels_last_weight(w_t, weight, g, isa.lanes);
    parallel_rows(g.N, g.OC * g.OH * g.OW * K, kGemmGrain, [&](int64_t n0, int64_t n1) {
        run_direct<DirectInputGrad, T>(isa, dinp, dy_t, static_cast<const T*>(w_t), g, n0, n1);
    });
}

// conv2d_set_algorithm's choice: 0 auto, 1 im2col, 2 implicit, 3 direct (the channel
// vectors), 4 direct_rows (vectors along output rows where rows_applies, else as 3).
std::atomic<int> g_algorithm{0};
const char* const kAlgorithmNames[] = {"auto", "im2col", "implicit", "direct", "direct_rows"};
constexpr int kAlgorithms = sizeof(kAlgorithmNames) / sizeof(kAlgorithmNames[0]);

// "auto": the direct kernel wherever it applies, else im2col. Measured at 1 thread against
// PyTorch, interleaved, on benchmarks/bench_conv.py's shapes (Zen 5, under load): direct
// took LeNet conv1 from ~1.0x to ~1.7-2.0x and conv2 from ~0.5x to ~0.9x (AVX2) / ~1.3x
// (AVX-512). The implicit fill never won: 7-11% more instructions than im2col + pack
// (callgrind, 3x3 shapes and the 224x224 RGB layer) and no better timings; again with the
// panel-fit tiles (forward_tile_rows) on this Xeon: im2col 0-15% ahead on the four 3x3
// shapes of bench_conv.py, AVX-512 and AVX2 (interleaved CPU time, best of 12, under load).
bool use_direct_rows(const Conv2dGeometry& g, int item_size, bool weight_grad);

bool use_direct(const Conv2dGeometry& g, int item_size, bool weight_grad) {
    if (!direct_applies(g, item_size)) return false;
    const int algorithm = g_algorithm.load(std::memory_order_relaxed);
    if (algorithm != 0 && algorithm < 3) return false;
    if (!channel_kernel_applies(g, item_size)) return !weight_grad && use_direct_rows(g, item_size, false);
    return true;
}

// Whether the channel kernel takes the input gradient (direct_input_grad): where it can
// take the weight gradient, for stride 1 without dilation, and with at least a block of 6
// input channels (fewer leave each tap's output-gradient load a multiply-add or two: with
// it for LeNet conv1's one input channel as well, a LeNet-5 step that computed conv1's
// input gradient took 5.3M more instructions). LeNet conv2's, (64,6,14,14) -> 16 k5: the
// GEMM, its packing and col2im took 7.65M instructions, the transpose of dout and this
// kernel 5.37M (callgrind, AVX2 path); a LeNet-5 epoch at 2 threads (AVX2) went from 2.05
// to 1.88 s (medians of 4 alternating processes, 300 steps).
bool use_direct_input_grad(const Conv2dGeometry& g, int item_size) {
    return use_direct(g, item_size, true) && g.C >= 6 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 &&
           g.dilation_w == 1;
}

// Among the direct kernels, the one vectorised along rows (auto): where each multiply-add
// instruction computes at least as many outputs as the channel kernel's, OW / (vectors per
// row) against OC / (its vectors per position), and for the weight gradient only on rows
// of 16 floats (8 doubles) or more, where each row's setup and masked last vector are
// paid for. Measured at 1 thread, interleaved, 10th percentiles of 200 calls, three fresh
// processes per ISA (this Xeon: one multiply-add per cycle at any width; shared with
// another developer, so the absolute times drift by 30%; the ratios held), channel ->
// row kernel:
//   LeNet conv1 (64,1,28,28) -> 6 k5, padding 2 + ReLU: AVX-512 forward 1.06-1.28 ->
//     0.35-0.38 ms (3.0-3.5x), weight + bias gradient 0.93-1.57 -> 0.37-0.55 (2.5-2.9x);
//     AVX2 1.35-1.9x and 1.6-1.75x. PyTorch (oneDNN, AVX-512) meanwhile 1.05-1.12 / 0.97-1.10.
//   the same without padding (bench_conv.py): AVX-512 3.2-3.3x / 2.4-2.8x; AVX2 1.6-1.9x / 1.7-1.9x
//   first version, kernel before the tap table and dy_rows:
//   (3,32,32) -> 16 k5 p2: AVX-512 3.3x forward, 1.3x gradient; AVX2 1.8x, 1.2x
//   (6,14,14) -> 6 k3 p1 on AVX2 (2 ymm for 14 columns): forward 1.2x, gradient 0.9x;
//   (1,12,12) -> 6 k5 on AVX2 (one ymm a row): forward 1.4x, gradient 0.8x
//   LeNet conv2 (6,14,14) -> 16 k5 on AVX2 (2 ymm for 10 columns): 0.6x, 0.3x: channels
//     (on AVX-512 its rows are shorter than a zmm: the channel kernel).
// More than 16 channels (the channel kernel's limit), forward only: the row kernel against
// im2col + GEMM, both near this core's multiply-add rate on the 3x3 layers of
// bench_conv.py, so the row kernel wins by what it does not do (no column matrix, no
// packing, no padded copy of the batch) and loses by the lanes it computes twice where W
// does not divide OW. Measured at 1 thread, float32, im2col -> row kernel, 10th percentiles
// of 10-15 interleaved calls, fresh processes (this Xeon under another developer's load:
// absolute times drift by up to 1.5x, so ranges). First version, three processes per ISA:
//   (64,32,28,28) -> 64 k3 p1: AVX-512 38.2/29.0/38.3 -> 33.6/27.6/31.8 ms (5-17% less);
//     AVX2 45.9/46.5/39.4 -> 46.0/46.5/36.8 (a tie: 28 = 4 ymm - 4 lanes)
//   (32,64,32,32) -> 128 k3 p1: AVX-512 72.2/85.2/70.8 -> 66.5/79.3/55.4 (7-22%);
//     AVX2 123/94/90 -> 119/83/84 (4-12%)
//   (1,3,224,224) -> 64 k3 p1: AVX-512 4.30/4.47/4.74 -> 3.65/3.70/3.09 (15-35%);
//     AVX2 8.3/4.4/6.5 -> 6.0/4.5/5.4 (27%, -2%, 17%)
// the final kernel against the main branch's build loaded into the same process (auto
// both), two processes per ISA: AVX-512 (64,32,28,28) 38.4/34.1 -> 33.3/29.6 ms,
// (32,64,32,32) 81.9/70.2 -> 76.3/67.2, (1,3,224,224) 4.89/4.60 -> 3.68/3.63; AVX2
// (32,64,32,32) 101/111 -> 89/111, (1,3,224,224) 7.5/5.4 -> 5.2/4.5. Instructions
// (callgrind, AVX2, im2col -> row kernel): 4 images of (64,32,28,28) 17.1M -> 17.8M,
// 2 of (32,64,32,32) 41.3M -> 39.4M, (1,3,224,224) 39.4M -> 31.0M.
// So: on AVX-512 where the row's vectors are at least 7/8 full, on AVX2 only where they
// are full (OW a multiple of 8 floats), both with rows of two vectors or more (the blocks
// measured) and one output row's input rows within kRowsTileBytes (in L1: the shapes
// measured; deeper layers, e.g. 256 channels, read them from L2: not measured). Not on the
// baseline, nor in double precision (neither measured).
bool rows_wins_over_im2col(const Conv2dGeometry& g, int item_size) {
    const simd::Isa isa = simd::current_isa();
    if ((isa != simd::Isa::avx512 && isa != simd::Isa::avx2) || item_size != 4) return false;
    const int64_t width = rows_vector_bytes(isa) / item_size, row_vectors = (g.OW + width - 1) / width;
    const int64_t lanes = row_vectors * width;
    const bool full_enough = isa == simd::Isa::avx512 ? 8 * g.OW >= 7 * lanes : g.OW == lanes;
    const int64_t reach = (g.KH - 1) * g.dilation_h + 1, padded_w = g.W + g.pad_left + g.pad_right;
    return full_enough && row_vectors >= 2 && reach * g.C * padded_w * item_size <= kRowsTileBytes;
}

bool use_direct_rows(const Conv2dGeometry& g, int item_size, bool weight_grad) {
    if (!rows_applies(g, item_size)) return false;
    const int algorithm = g_algorithm.load(std::memory_order_relaxed);
    if (algorithm == 4) return true;
    if (algorithm != 0) return false;
    if (!channel_kernel_applies(g, item_size)) return !weight_grad && rows_wins_over_im2col(g, item_size);
    const simd::Isa isa = simd::current_isa();
    const int64_t vector_bytes = rows_vector_bytes(isa), width = vector_bytes / item_size;
    const int64_t row_vectors = (g.OW + width - 1) / width;
    // The channel kernel: lanes (direct_isa) in one instruction on AVX-512, in 32-byte ones
    // on AVX2 and in 16-byte ones on the baseline.
    const int64_t channel_bytes = (g.OC * item_size > 32 ? 64 : 32);
    const int64_t channel_vectors = std::max<int64_t>(1, channel_bytes / vector_bytes);
    if (g.OW * channel_vectors < g.OC * row_vectors) return false;
    return !weight_grad || g.OW * item_size >= 64;
}

// Whether the forward fills the GEMM's panels from the image (implicit GEMM) rather than
// im2col into a buffer that the GEMM then packs: only when asked for (see use_direct for
// the measurements). A pointwise convolution needs neither; one output channel per group
// is a one-row product that reads B in place (no panels to fill).
bool use_implicit_columns(const Dims& d) {
    return !d.pointwise && d.OCg >= 2 && g_algorithm.load(std::memory_order_relaxed) == 2;
}

// Output rows per forward tile of a single image: at most what fits kTileBytes, and among
// those the count whose tiles cost the GEMM fewest columns. The GEMM computes whole
// NR-wide panels (panel_width), so a tile's columns count rounded up to a multiple of NR,
// plus kTileColumnsOverhead per tile (one more GEMM call). With 28-wide rows and AVX-512's
// NR = 32, tiles of 6 rows computed 192 columns for 168 (14% wasted); 8 rows are 224 = 7
// panels exactly. On ties the most rows.
int64_t forward_tile_rows(const Conv2dGeometry& g, const Dims& d, int64_t item_size, int64_t nr) {
    if (d.chunk > 1) return g.OH;  // small images: whole ones, several per column matrix
    const int64_t columns = kTileBytes / ((d.K + d.OCg) * item_size);
    const int64_t fit = std::min(g.OH, std::max<int64_t>(1, columns / g.OW));
    const auto cost = [&](int64_t rows) {  // rows > 0: one tile's padded columns + overhead
        return rows == 0 ? 0 : (rows * g.OW + nr - 1) / nr * nr + kTileColumnsOverhead;
    };
    int64_t best = fit, best_cost = -1;
    for (int64_t rows = fit; rows >= 1; --rows) {
        const int64_t total = g.OH / rows * cost(rows) + cost(g.OH % rows);
        if (best_cost < 0 || total < best_cost) best = rows, best_cost = total;
    }
    return best;
}

// Output columns per forward tile (see kTileMaxBytes): OW, or fewer when one row is too big
// (forward_tile_rows then gives 1 row, since kTileMaxBytes > kTileBytes).
int64_t forward_tile_cols(const Conv2dGeometry& g, const Dims& d, int64_t item_size) {
    if (d.chunk > 1) return g.OW;
    return std::min(g.OW, std::max<int64_t>(1, kTileMaxBytes / ((d.K + d.OCg) * item_size)));
}

// One forward work item: output rows [oh_begin, oh_end), columns [ow_begin, ow_end), of
// group grp of images [n0, n0 + count). count > 1 only with whole images; less than whole
// rows only within one row (so that the tile's outputs are one contiguous run).
//   col:     this thread's column buffer (K, count * width); unused when pointwise
//   staging: (OCg, count * plane), where a chunk's product lands before going to `out`
//   w_packed: W_g (OCg, K) packed as the GEMMs' left operand, once per call
//   epilogue: bias (this group's, as row_bias) and activation, or null for neither
//   implicit: the GEMM fills its panels from the image (ImplicitColumns), col is unused
template <typename T>
void forward_item(T* out, const T* inp, const PackedMatrix<T>& w_packed, const GemmEpilogue<T>* epilogue,
                  bool implicit, const Conv2dGeometry& g, const Dims& d, int64_t n0, int64_t count, int64_t grp,
                  int64_t oh_begin, int64_t oh_end, int64_t ow_begin, int64_t ow_end, T* col, T* staging) {
    const int64_t first = oh_begin * g.OW + ow_begin, width = (oh_end - oh_begin) * (ow_end - ow_begin);
    const int64_t columns = count * width;
    auto x_g = [&](int64_t n) { return inp + (n * g.C + grp * d.Cg) * d.in_plane; };
    auto y_g = [&](int64_t n) { return out + (n * g.OC + grp * d.OCg) * d.plane; };

    // act(W_g @ col + bias) goes straight into the output, y (OCg, width) with row stride
    // OH*OW, for one image; for a chunk into staging (OCg, count*plane) first. The epilogue
    // adds the bias and applies the activation tile by tile.
    T* target = count == 1 ? y_g(n0) + first : staging;
    const int64_t ld_target = count == 1 ? d.plane : columns;
    if (implicit) {
        // The GEMM writes the column matrix into its panels as it needs them (whole rows only).
        const ImplicitColumns<T> cols(x_g(n0), g.C * d.in_plane, g, oh_begin, width);
        gemm_packed_a_filled<T>(w_packed, columns, cols, T(0), target, ld_target, epilogue);
    } else {
        // The column matrix (K, columns): image i's columns at i * width.
        const T* cols = x_g(n0) + first;  // pointwise: the image's own (Cg, H*W) columns, in place
        int64_t ld_cols = d.plane;
        if (!d.pointwise) {
            for (int64_t i = 0; i < count; ++i)
                im2col(col + i * width, columns, x_g(n0 + i), d.Cg, g, oh_begin, oh_end, ow_begin, ow_end);
            cols = col;
            ld_cols = columns;
        }
        gemm_packed_a<T>(w_packed, false, columns, T(1), cols, ld_cols, T(0), target, ld_target, epilogue);
    }
    if (count == 1) return;
    for (int64_t i = 0; i < count; ++i)
        for (int64_t oc = 0; oc < d.OCg; ++oc)
            std::memcpy(y_g(n0 + i) + oc * d.plane, staging + oc * columns + i * d.plane, sizeof(T) * d.plane);
}

}  // namespace

int64_t conv2d_output_size(int64_t n, int64_t k, int64_t stride, int64_t pad_lo, int64_t pad_hi,
                           int64_t dilation) {
    const int64_t span = n + pad_lo + pad_hi - dilation * (k - 1) - 1;
    if (span < 0) return 0;
    return span / stride + 1;
}

// The work items are (chunk of images, group, tile of output rows); each writes its own
// part of the output, so they run in any order on any thread.
template <typename T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g,
                    Activation activation, T negative_slope) {
    if (use_direct(g, sizeof(T), false)) {
        if (use_direct_rows(g, sizeof(T), false)) {
            direct_rows_forward(out, inp, weight, bias, g, activation, negative_slope);  // pads by tiles itself
        } else {
            Conv2dGeometry unpadded;
            direct_forward(out, padded_input(inp, g, &unpadded), weight, bias, unpadded, activation, negative_slope);
        }
        return;
    }
    const Dims d = dims_of(g);
    // Every item of a group multiplies by the same W_g: pack it once here, not per item.
    // ... and give it its group's bias in the epilogue (none at all without bias or activation).
    std::vector<PackedMatrix<T>> w_packed;
    std::vector<GemmEpilogue<T>> epilogues;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
        w_packed.push_back(PackedMatrix<T>::pack_a(false, d.OCg, d.K, weight + grp * d.OCg * d.K, d.K));
        epilogues.push_back(GemmEpilogue<T>{bias ? bias + grp * d.OCg : nullptr, nullptr, activation, negative_slope});
    }
    const int64_t nr = w_packed[0].panel_width();
    const int64_t tile_rows = forward_tile_rows(g, d, sizeof(T), nr), tile_cols = forward_tile_cols(g, d, sizeof(T));
    const int64_t col_tiles = (g.OW + tile_cols - 1) / tile_cols;
    const int64_t tiles = (g.OH + tile_rows - 1) / tile_rows * col_tiles;
    const int64_t chunks = (g.N + d.chunk - 1) / d.chunk;
    const int64_t items = chunks * g.groups * tiles;
    const int64_t columns = d.chunk * tile_rows * tile_cols;
    const int nt = item_threads(items, d.OCg * columns * d.K);
    const bool has_epilogue = bias != nullptr || activation != Activation::kNone;
    // The implicit fill walks whole output rows: not with row segments (tile_cols < OW).
    const bool implicit = use_implicit_columns(d) && tile_cols == g.OW;
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; ++item) errors.run([&] {
        const int64_t chunk = item / (g.groups * tiles), grp = (item / tiles) % g.groups, tile = item % tiles;
        const int64_t n0 = chunk * d.chunk, count = std::min(d.chunk, g.N - n0);
        const int64_t oh_begin = tile / col_tiles * tile_rows, oh_end = std::min(g.OH, oh_begin + tile_rows);
        const int64_t ow_begin = tile % col_tiles * tile_cols, ow_end = std::min(g.OW, ow_begin + tile_cols);
        T* col = d.pointwise || implicit ? nullptr : thread_buffer<T>(0, d.K * columns);
        T* staging = d.chunk > 1 ? thread_buffer<T>(1, d.OCg * columns) : nullptr;
        forward_item(out, inp, w_packed[grp], has_epilogue ? &epilogues[grp] : nullptr, implicit, g, d, n0, count, grp,
                     oh_begin, oh_end, ow_begin, ow_end, col, staging);
    });
    errors.rethrow();
}

// ---------------------------------------------------------------------------------------
// backward

namespace {

// Backward takes one image's output positions a tile at a time: the whole image when its
// column matrix (K values per position) fits kTileBytes, else whole rows that fit it (at
// least one), so that a tile's columns stay in L2 from im2col to the weight-gradient GEMM
// and from the input-gradient GEMM to col2im; segments of one row when a single row passes
// kTileMaxBytes. Tiles depend on the shapes only. Whole images (2.3 MB of columns for 3x3
// (32,64,32,32) -> 128) against 7-row tiles there, 1 thread, AVX-512, alternating processes:
// weight gradient 63-66 -> 56-63 ms, input gradient 56-59 -> 53 ms (minimums of 8).
struct BackwardTiles {
    int64_t rows, cols;           // output rows and columns per tile
    int64_t row_tiles, col_tiles;
    int64_t positions() const { return rows * cols; }
};

BackwardTiles backward_tiles(const Conv2dGeometry& g, const Dims& d, int64_t item_size) {
    BackwardTiles t{g.OH, g.OW, 1, 1};
    const int64_t fit = std::max<int64_t>(1, kTileBytes / (d.K * item_size));  // positions
    if (d.chunk == 1 && !d.pointwise && fit < d.plane) {
        t.cols = std::min(g.OW, std::max<int64_t>(1, kTileMaxBytes / (d.K * item_size)));
        t.rows = t.cols < g.OW ? 1 : std::max<int64_t>(1, fit / g.OW);
        t.row_tiles = (g.OH + t.rows - 1) / t.rows;
        t.col_tiles = (g.OW + t.cols - 1) / t.cols;
    }
    return t;
}

// The gradients from images [n0, n0 + count) (one chunk), for every group.
//   dw:   (OC, K) buffer the chunk's dW is added into (beta_w = 1) or written to (beta_w = 0);
//         null to skip the weight gradient.
//   dinp: (N, C, H, W); images [n0, n0 + count) overwritten with dL/dinp; null to skip.
//   col:  (K, count * tiles.positions()) column buffer; staging: (OCg, count*plane), used
//         when count > 1 (then the tile is the whole image).
//   w_t_packed: per group, W_g^T (K, OCg) packed as the input-gradient GEMMs' left operand.
template <typename T>
void backward_chunk(T* dinp, T* dw, T beta_w, const T* dout, const T* inp,
                    const std::vector<PackedMatrix<T>>& w_t_packed, const Conv2dGeometry& g, const Dims& d,
                    const BackwardTiles& tiles, int64_t n0, int64_t count, T* col, T* staging) {
    const int64_t columns = count * d.plane;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
        auto x_g = [&](int64_t n) { return inp + (n * g.C + grp * d.Cg) * d.in_plane; };
        auto dy_g = [&](int64_t n) { return dout + (n * g.OC + grp * d.OCg) * d.plane; };

        // dY_g of the chunk as one (OCg, columns) matrix: in place for one image, else gathered.
        const T* dy = dy_g(n0);
        int64_t ld_dy = d.plane;
        if (count > 1) {
            for (int64_t i = 0; i < count; ++i)
                for (int64_t oc = 0; oc < d.OCg; ++oc)
                    std::memcpy(staging + oc * columns + i * d.plane, dy_g(n0 + i) + oc * d.plane,
                                sizeof(T) * d.plane);
            dy = staging;
            ld_dy = columns;
        }
        // One tile (the whole chunk) in the usual case; see backward_tiles for the others.
        for (int64_t t = 0; t < tiles.row_tiles * tiles.col_tiles; ++t) {
            const int64_t oh_begin = t / tiles.col_tiles * tiles.rows, oh_end = std::min(g.OH, oh_begin + tiles.rows);
            const int64_t ow_begin = t % tiles.col_tiles * tiles.cols, ow_end = std::min(g.OW, ow_begin + tiles.cols);
            const int64_t first = oh_begin * g.OW + ow_begin, width = (oh_end - oh_begin) * (ow_end - ow_begin);
            const int64_t tile_columns = count * width;  // == columns for a whole-image tile
            if (dw) {
                const T* cols = x_g(n0);  // pointwise (count is 1): the image is its column matrix
                if (!d.pointwise) {
                    for (int64_t i = 0; i < count; ++i)
                        im2col(col + i * width, tile_columns, x_g(n0 + i), d.Cg, g, oh_begin, oh_end, ow_begin, ow_end);
                    cols = col;
                }
                // dW_g (OCg, K) += dY_g (OCg, columns) @ col^T (columns, K). K (the long side for
                // every usual layer) is the GEMM's N, its cheap side to pack and to split.
                gemm<T>(false, true, d.OCg, d.K, tile_columns, T(1), dy + first, ld_dy, cols, tile_columns,
                        t == 0 ? beta_w : T(1), dw + grp * d.OCg * d.K, d.K);
            }
            if (dinp) {
                if (d.pointwise) {
                    // dX_g (Cg, H*W) = W_g^T (Cg, OCg) @ dY_g (OCg, H*W), straight into the input grad.
                    T* dx = dinp + (n0 * g.C + grp * d.Cg) * d.in_plane;
                    gemm_packed_a<T>(w_t_packed[grp], false, d.plane, T(1), dy, ld_dy, T(0), dx, d.plane);
                } else {
                    // dcol (K, columns) = W_g^T (K, OCg) @ dY_g (OCg, columns), then each image's
                    // columns scattered back. The column buffer is free again (dW is done with it).
                    gemm_packed_a<T>(w_t_packed[grp], false, tile_columns, T(1), dy + first, ld_dy, T(0), col,
                                     tile_columns);
                    for (int64_t i = 0; i < count; ++i)
                        col2im(dinp + ((n0 + i) * g.C + grp * d.Cg) * d.in_plane, col + i * width, tile_columns,
                               d.Cg, g, oh_begin, oh_end, ow_begin, ow_end, t == 0);
                }
            }
        }
    }
}

}  // namespace

template <typename T>
void conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     const Conv2dGeometry& g) {
    if (dbias) channel_sum(dbias, dout, g.N, g.OC, g.OH * g.OW);  // dbias[oc] += sum over n, oh, ow
    const T* dy_t = nullptr;  // channels_last_dout's, once for both channel kernels
    if (dweight && use_direct(g, sizeof(T), true)) {
        Conv2dGeometry unpadded;
        const T* x = padded_input(inp, g, &unpadded);
        if (use_direct_rows(g, sizeof(T), true)) {
            direct_rows_weight_grad(dweight, dout, x, unpadded);
        } else {
            dy_t = channels_last_dout(dout, g, direct_isa<T>(g.OC).lanes);
            direct_weight_grad(dweight, dy_t, x, unpadded);
        }
        dweight = nullptr;  // done: what follows is the input gradient only
    }
    if (dinp && use_direct_input_grad(g, sizeof(T))) {
        if (!dy_t) dy_t = channels_last_dout(dout, g, direct_isa<T>(g.OC).lanes);
        direct_input_grad(dinp, dy_t, weight, g);
        dinp = nullptr;
    }
    if (!dinp && !dweight) return;
    const Dims d = dims_of(g);
    const BackwardTiles tiles = backward_tiles(g, d, sizeof(T));
    const int64_t chunks = (g.N + d.chunk - 1) / d.chunk;
    const int64_t columns = d.chunk * d.plane;

    // The chunks are grouped into `slices` runs. Each run sums its chunks' weight gradients
    // into its own partial buffer (the first chunk writes, the rest add); the partials are
    // then added to dweight in slice order. Chunks and slices depend on the shapes only,
    // never on the thread count, so the result has the same bits at any thread count. One
    // slice (a batch of one, or a weight too large to copy) adds into dweight directly.
    const int64_t weight_size = g.OC * d.K;
    int64_t slices = chunks;
    if (dweight) slices = std::max<int64_t>(1, std::min({chunks, kMaxSlices, kPartialBudget / weight_size}));
    const bool use_partials = dweight && slices > 1;
    std::vector<T> partials(use_partials ? static_cast<size_t>(slices * weight_size) : 0);

    const int64_t macs_per_chunk = g.OC * columns * d.K * ((dweight ? 1 : 0) + (dinp ? 1 : 0));
    const int nt = item_threads(slices, macs_per_chunk * (chunks / slices));
    // dX = W_g^T @ dY for every chunk: W_g^T (K, OCg) is packed once here, not per chunk.
    // (K == Cg when pointwise, so one packing serves both input-gradient GEMMs.)
    std::vector<PackedMatrix<T>> w_t_packed;
    if (dinp)
        for (int64_t grp = 0; grp < g.groups; ++grp)
            w_t_packed.push_back(PackedMatrix<T>::pack_a(true, d.K, d.OCg, weight + grp * d.OCg * d.K, d.K));
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t s = 0; s < slices; ++s) errors.run([&] {
        const int64_t c0 = s * chunks / slices, c1 = (s + 1) * chunks / slices;
        // the column matrix, with the values Col2imRows may read around it
        const int64_t slack = col2im_slack<T>(g);
        T* col = d.pointwise ? nullptr : thread_buffer<T>(0, d.K * d.chunk * tiles.positions() + 2 * slack) + slack;
        T* staging = d.chunk > 1 ? thread_buffer<T>(1, d.OCg * columns) : nullptr;
        T* dw = use_partials ? partials.data() + s * weight_size : dweight;
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t n0 = c * d.chunk, count = std::min(d.chunk, g.N - n0);
            const T beta_w = (use_partials && c == c0) ? T(0) : T(1);
            backward_chunk(dinp, dw, beta_w, dout, inp, w_t_packed, g, d, tiles, n0, count, col, staging);
        }
    });
    errors.rethrow();

    if (use_partials) {
        const T* parts = partials.data();
        parallel_rows(weight_size, slices, kCopyGrain, [=](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                T total = parts[i];
                for (int64_t s = 1; s < slices; ++s) total += parts[s * weight_size + i];
                dweight[i] += total;
            }
        });
    }
}

bool conv2d_set_algorithm(const char* name) {
    for (int i = 0; i < kAlgorithms; ++i) {
        if (std::strcmp(name, kAlgorithmNames[i]) != 0) continue;
        g_algorithm.store(i);
        return true;
    }
    return false;
}

const char* conv2d_algorithm() { return kAlgorithmNames[g_algorithm.load()]; }

template void conv2d_forward<float>(float*, const float*, const float*, const float*, const Conv2dGeometry&,
                                    Activation, float);
template void conv2d_forward<double>(double*, const double*, const double*, const double*, const Conv2dGeometry&,
                                     Activation, double);
template void conv2d_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                     const Conv2dGeometry&);
template void conv2d_backward<double>(double*, double*, double*, const double*, const double*,
                                      const double*, const Conv2dGeometry&);

}  // namespace pycore
