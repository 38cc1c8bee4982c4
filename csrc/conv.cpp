// conv.cpp: conv2d forward and backward as im2col + GEMM (see conv.h for the math).
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
#include <cstring>
#include <vector>

#include "gemm.h"
#include "omp_guard.h"
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
// values each) together stay within about this many bytes (a typical per-core L2).
constexpr int64_t kTileBytes = int64_t(1) << 18;
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

// This thread's buffer number `which` (0: columns, 1: staging), at least `count` elements.
// It lives as long as the (pooled) thread, so repeated calls do not allocate; never shared.
template <typename T>
T* thread_buffer(int which, int64_t count) {
    thread_local std::vector<T> buffers[2];
    std::vector<T>& buf = buffers[which];
    if (buf.size() < static_cast<size_t>(count)) buf.resize(static_cast<size_t>(count));
    return buf.data();
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

// The im2col columns of the output tile rows [oh_begin, oh_end) x columns [ow_begin, ow_end)
// of img (channels, H, W): a (channels*KH*KW, (oh_end - oh_begin)*(ow_end - ow_begin))
// matrix written at col with row stride ld (whole rows: ow_begin = 0, ow_end = OW).
// Every element is written (padding as zeros), so the buffer needs no clearing. A row is
// one (c, kh, kw): for each output row a zero run, a contiguous (stride 1) or strided copy,
// and a zero run, as plain loops (the runs are short: a libc call per run costs more).
template <typename T>
void im2col(T* col, int64_t ld, const T* img, int64_t channels, const Conv2dGeometry& g, int64_t oh_begin,
            int64_t oh_end, int64_t ow_begin, int64_t ow_end) {
    const int64_t OW = ow_end - ow_begin;  // the tile's width (g.OW for whole rows)
    const int64_t taps = g.KH * g.KW, rows = channels * taps, width = (oh_end - oh_begin) * OW;
    const int64_t sw = g.stride_w;
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
        for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            T* __restrict d = dst + (oh - oh_begin) * OW;
            for (int64_t ow = 0; ow < ow_lo; ++ow) d[ow] = T(0);
            if (ow_hi > ow_lo) {
                // input column: (ow_begin + ow)*sw + w_off = ow*sw + offset
                const T* __restrict s = src + (oh * g.stride_h + h_off) * g.W;
                const int64_t offset = ow_begin * sw + w_off;
                if (sw == 1) {
                    for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow] = s[ow + offset];
                } else {
                    for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow] = s[ow * sw + offset];
                }
            }
            for (int64_t ow = ow_hi; ow < OW; ++ow) d[ow] = T(0);
        }
        std::fill(dst + (oh_hi - oh_begin) * OW, dst + width, T(0));
    });
    errors.rethrow();
}

// img (channels, H, W) += col2im(col): the adjoint of im2col over the output tile rows
// [oh_begin, oh_end) x columns [ow_begin, ow_end) (im2col's layout), each column entry (row
// stride ld) added back onto the input position it was read from (padding dropped); with
// `clear`, img is zeroed first (overwritten). Split over channels: the KH*KW rows of one
// channel all write the same input plane, so a channel belongs to one thread.
template <typename T>
void col2im(T* img, const T* col, int64_t ld, int64_t channels, const Conv2dGeometry& g, int64_t oh_begin,
            int64_t oh_end, int64_t ow_begin, int64_t ow_end, bool clear) {
    const int64_t sw = g.stride_w, OW = ow_end - ow_begin;  // OW: the tile's width
    const int nt = threads_for(channels * g.KH * g.KW * (oh_end - oh_begin) * OW, kCopyGrain);
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t c = 0; c < channels; ++c) errors.run([&] {
        T* dst = img + c * g.H * g.W;
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
                const T* src = col + ((c * g.KH + kh) * g.KW + kw) * ld;
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

// Sum of x[0:n] in a fixed order: eight interleaved partial sums (which the compiler can
// keep in one vector register), then added left to right.
template <typename T>
T sum_of(const T* x, int64_t n) {
    T lanes[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += x[i + l];
    T total = 0;
    for (int l = 0; l < 8; ++l) total += lanes[l];
    for (; i < n; ++i) total += x[i];
    return total;
}

// ---------------------------------------------------------------------------------------
// forward

// Output rows per forward tile of a single image (see kTileBytes).
int64_t forward_tile_rows(const Conv2dGeometry& g, const Dims& d, int64_t item_size) {
    if (d.chunk > 1) return g.OH;  // small images: whole ones, several per column matrix
    const int64_t columns = kTileBytes / ((d.K + d.OCg) * item_size);
    return std::min(g.OH, std::max<int64_t>(1, columns / g.OW));
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
template <typename T>
void forward_item(T* out, const T* inp, const PackedMatrix<T>& w_packed, const T* bias, const Conv2dGeometry& g,
                  const Dims& d, int64_t n0, int64_t count, int64_t grp, int64_t oh_begin, int64_t oh_end,
                  int64_t ow_begin, int64_t ow_end, T* col, T* staging) {
    const int64_t first = oh_begin * g.OW + ow_begin, width = (oh_end - oh_begin) * (ow_end - ow_begin);
    const int64_t columns = count * width;
    auto x_g = [&](int64_t n) { return inp + (n * g.C + grp * d.Cg) * d.in_plane; };
    auto y_g = [&](int64_t n) { return out + (n * g.OC + grp * d.OCg) * d.plane; };

    // The column matrix (K, columns): image i's columns at i * width.
    const T* cols = x_g(n0) + first;  // pointwise: the image's own (Cg, H*W) columns, in place
    int64_t ld_cols = d.plane;
    if (!d.pointwise) {
        for (int64_t i = 0; i < count; ++i) im2col(col + i * width, columns, x_g(n0 + i), d.Cg, g, oh_begin, oh_end, ow_begin, ow_end);
        cols = col;
        ld_cols = columns;
    }
    if (count == 1) {
        // Straight into the output: y (OCg, width), row stride OH*OW. Start from the bias and
        // let the GEMM add onto it (beta = 1), or overwrite (beta = 0).
        T* y = y_g(n0) + first;
        T beta = T(0);
        if (bias) {
            for (int64_t oc = 0; oc < d.OCg; ++oc)
                std::fill(y + oc * d.plane, y + oc * d.plane + width, bias[grp * d.OCg + oc]);
            beta = T(1);
        }
        gemm_packed_a<T>(w_packed, false, width, T(1), cols, ld_cols, beta, y, d.plane);
        return;
    }
    // staging (OCg, count*plane) = W_g @ col, then each image's block (plus bias) to its place.
    gemm_packed_a<T>(w_packed, false, columns, T(1), cols, ld_cols, T(0), staging, columns);
    for (int64_t i = 0; i < count; ++i) {
        for (int64_t oc = 0; oc < d.OCg; ++oc) {
            const T b = bias ? bias[grp * d.OCg + oc] : T(0);
            const T* s = staging + oc * columns + i * d.plane;
            T* y = y_g(n0 + i) + oc * d.plane;
            for (int64_t j = 0; j < d.plane; ++j) y[j] = s[j] + b;
        }
    }
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
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g) {
    const Dims d = dims_of(g);
    const int64_t tile_rows = forward_tile_rows(g, d, sizeof(T)), tile_cols = forward_tile_cols(g, d, sizeof(T));
    const int64_t col_tiles = (g.OW + tile_cols - 1) / tile_cols;
    const int64_t tiles = (g.OH + tile_rows - 1) / tile_rows * col_tiles;
    const int64_t chunks = (g.N + d.chunk - 1) / d.chunk;
    const int64_t items = chunks * g.groups * tiles;
    const int64_t columns = d.chunk * tile_rows * tile_cols;
    const int nt = item_threads(items, d.OCg * columns * d.K);
    // Every item of a group multiplies by the same W_g: pack it once here, not per item.
    std::vector<PackedMatrix<T>> w_packed;
    for (int64_t grp = 0; grp < g.groups; ++grp)
        w_packed.push_back(PackedMatrix<T>::pack_a(false, d.OCg, d.K, weight + grp * d.OCg * d.K, d.K));
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t item = 0; item < items; ++item) errors.run([&] {
        const int64_t chunk = item / (g.groups * tiles), grp = (item / tiles) % g.groups, tile = item % tiles;
        const int64_t n0 = chunk * d.chunk, count = std::min(d.chunk, g.N - n0);
        const int64_t oh_begin = tile / col_tiles * tile_rows, oh_end = std::min(g.OH, oh_begin + tile_rows);
        const int64_t ow_begin = tile % col_tiles * tile_cols, ow_end = std::min(g.OW, ow_begin + tile_cols);
        T* col = d.pointwise ? nullptr : thread_buffer<T>(0, d.K * columns);
        T* staging = d.chunk > 1 ? thread_buffer<T>(1, d.OCg * columns) : nullptr;
        forward_item(out, inp, w_packed[grp], bias, g, d, n0, count, grp, oh_begin, oh_end, ow_begin, ow_end, col,
                     staging);
    });
    errors.rethrow();
}

// ---------------------------------------------------------------------------------------
// backward

namespace {

// Backward takes one image's output positions a tile at a time: the whole image, unless its
// column matrix (K values per position) passes kTileMaxBytes; then whole rows that fit, or
// segments of one row when a single row does not. Tiles depend on the shapes only.
struct BackwardTiles {
    int64_t rows, cols;           // output rows and columns per tile
    int64_t row_tiles, col_tiles;
    int64_t positions() const { return rows * cols; }
};

BackwardTiles backward_tiles(const Conv2dGeometry& g, const Dims& d, int64_t item_size) {
    BackwardTiles t{g.OH, g.OW, 1, 1};
    const int64_t fit = std::max<int64_t>(1, kTileMaxBytes / (d.K * item_size));  // positions
    if (d.chunk == 1 && !d.pointwise && fit < d.plane) {
        t.cols = std::min(g.OW, fit);
        t.rows = t.cols < g.OW ? 1 : fit / g.OW;
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

// dbias[oc] += sum over images and positions of dout[n, oc, :, :]; split over channels.
template <typename T>
void bias_backward(T* dbias, const T* dout, const Conv2dGeometry& g) {
    const int64_t plane = g.OH * g.OW;
    const int nt = threads_for(g.OC * g.N * plane, kCopyGrain);
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t oc = 0; oc < g.OC; ++oc) errors.run([&] {
        T total = 0;
        for (int64_t n = 0; n < g.N; ++n) total += sum_of(dout + (n * g.OC + oc) * plane, plane);
        dbias[oc] += total;
    });
    errors.rethrow();
}

}  // namespace

template <typename T>
void conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     const Conv2dGeometry& g) {
    if (dbias) bias_backward(dbias, dout, g);
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
        T* col = d.pointwise ? nullptr : thread_buffer<T>(0, d.K * d.chunk * tiles.positions());
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
        const int nt_sum = threads_for(slices * weight_size, kCopyGrain);
        RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for if (nt_sum > 1) num_threads(nt_sum) schedule(static)
        for (int64_t i = 0; i < weight_size; ++i) errors.run([&] {
            T total = partials[i];
            for (int64_t s = 1; s < slices; ++s) total += partials[s * weight_size + i];
            dweight[i] += total;
        });
        errors.rethrow();
    }
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*, const Conv2dGeometry&);
template void conv2d_forward<double>(double*, const double*, const double*, const double*,
                                     const Conv2dGeometry&);
template void conv2d_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                     const Conv2dGeometry&);
template void conv2d_backward<double>(double*, double*, double*, const double*, const double*,
                                      const double*, const Conv2dGeometry&);

}  // namespace pycore
