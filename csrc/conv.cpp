// conv.cpp: conv2d forward and backward as im2col + GEMM (see conv.h for the math).
//
// One image (and one group) at a time, a column matrix is built from the input:
//
//   col[(c, kh, kw), (oh, ow)] = inp[c, oh*sh - pad_top + kh*dh, ow*sw - pad_left + kw*dw]
//                                (0 outside the image)          shape (Cg*KH*KW, OH*OW)
//
// so that the convolution of one group is one matrix product, y_g = W_g @ col, with
// W_g the (OC/groups, Cg*KH*KW) block of the weight. A 1x1 kernel with stride 1 and no
// padding needs no im2col: the image itself, (Cg, H*W), is the column matrix.
//
// Threads. When the batch splits evenly over the threads, each thread takes whole images
// with its own column buffer (thread_local, so it is allocated once per pooled thread);
// the GEMMs inside then run serially (pycore::num_threads() is 1 inside a parallel
// region). With a batch of one, or one too small to split well, images are taken one at
// a time and every thread works inside each image: im2col/col2im split their rows or
// channels, and the GEMM splits its output. Memory is one column buffer per thread,
// never one for the whole batch.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "threads.h"

namespace pycore {
namespace {

// Elements a thread should copy (im2col, col2im, sums) before a second one helps.
constexpr int64_t kCopyGrain = int64_t(1) << 15;
// Multiply-adds per thread before another thread helps (the GEMM's own grain).
constexpr int64_t kGemmGrain = int64_t(1) << 18;
// The weight gradient is summed over the batch in at most this many slices, each into
// its own partial buffer, and the partials are added in slice order at the end.
constexpr int64_t kMaxSlices = 32;
// ... and all partial buffers together hold at most this many elements (16 MB of float).
constexpr int64_t kPartialBudget = int64_t(1) << 22;

struct Dims {
    int64_t Cg, OCg;   // channels per group: input, output
    int64_t K;         // Cg*KH*KW: rows of the column matrix, columns of W_g
    int64_t plane;     // OH*OW: columns of the column matrix
    int64_t in_plane;  // H*W
    bool pointwise;    // 1x1, stride 1, no padding: the image is its own column matrix
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
    return d;
}

// This thread's column buffer, at least `count` elements. It lives as long as the
// (pooled) thread, so repeated calls do not allocate; it is never shared.
template <typename T>
T* column_buffer(int64_t count) {
    thread_local std::vector<T> buffer;
    if (buffer.size() < static_cast<size_t>(count)) buffer.resize(static_cast<size_t>(count));
    return buffer.data();
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

// col (channels*KH*KW, OH*OW) = im2col(img (channels, H, W)). Every element is written
// (padding as zeros), so the buffer needs no clearing. A row is one (c, kh, kw): for each
// output row oh it is a zero run, a contiguous (stride 1) or strided copy, and a zero run.
template <typename T>
void im2col(T* col, const T* img, int64_t channels, const Conv2dGeometry& g) {
    const int64_t taps = g.KH * g.KW, rows = channels * taps, plane = g.OH * g.OW;
    const int64_t sw = g.stride_w;
    const int nt = threads_for(rows * plane, kCopyGrain);
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t c = r / taps, kh = (r % taps) / g.KW, kw = r % g.KW;
        const int64_t h_off = kh * g.dilation_h - g.pad_top, w_off = kw * g.dilation_w - g.pad_left;
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        valid_range(g.H, g.OH, g.stride_h, h_off, &oh_lo, &oh_hi);
        valid_range(g.W, g.OW, sw, w_off, &ow_lo, &ow_hi);
        const T* src = img + c * g.H * g.W;
        T* dst = col + r * plane;
        std::fill(dst, dst + oh_lo * g.OW, T(0));
        for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            T* d = dst + oh * g.OW;
            std::fill(d, d + ow_lo, T(0));
            if (ow_hi > ow_lo) {
                const T* s = src + (oh * g.stride_h + h_off) * g.W + ow_lo * sw + w_off;
                if (sw == 1) {
                    std::memcpy(d + ow_lo, s, sizeof(T) * (ow_hi - ow_lo));
                } else {
                    for (int64_t i = 0; i < ow_hi - ow_lo; ++i) d[ow_lo + i] = s[i * sw];
                }
            }
            std::fill(d + ow_hi, d + g.OW, T(0));
        }
        std::fill(dst + oh_hi * g.OW, dst + plane, T(0));
    }
}

// img (channels, H, W) = col2im(col (channels*KH*KW, OH*OW)): the adjoint of im2col, each
// column entry added back onto the input position it was read from (padding dropped).
// img is overwritten. Split over channels: the KH*KW rows of one channel all write the
// same input plane, so a channel belongs to one thread.
template <typename T>
void col2im(T* img, const T* col, int64_t channels, const Conv2dGeometry& g) {
    const int64_t plane = g.OH * g.OW, sw = g.stride_w;
    const int nt = threads_for(channels * g.KH * g.KW * plane, kCopyGrain);
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t c = 0; c < channels; ++c) {
        T* dst = img + c * g.H * g.W;
        std::fill(dst, dst + g.H * g.W, T(0));
        for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t h_off = kh * g.dilation_h - g.pad_top;
            int64_t oh_lo, oh_hi;
            valid_range(g.H, g.OH, g.stride_h, h_off, &oh_lo, &oh_hi);
            for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t w_off = kw * g.dilation_w - g.pad_left;
                int64_t ow_lo, ow_hi;
                valid_range(g.W, g.OW, sw, w_off, &ow_lo, &ow_hi);
                if (ow_hi == ow_lo) continue;
                const T* src = col + ((c * g.KH + kh) * g.KW + kw) * plane;
                for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
                    T* d = dst + (oh * g.stride_h + h_off) * g.W + ow_lo * sw + w_off;
                    const T* s = src + oh * g.OW + ow_lo;
                    const int64_t count = ow_hi - ow_lo;
                    if (sw == 1) {
                        for (int64_t i = 0; i < count; ++i) d[i] += s[i];
                    } else {
                        for (int64_t i = 0; i < count; ++i) d[i * sw] += s[i];
                    }
                }
            }
        }
    }
}

// Threads to spread `items` independent work items (images, or slices of the batch) over,
// each item then running its GEMMs serially. 1 means: take the items one at a time and let
// the threads work inside each one. Whole items per thread need no synchronisation and keep
// an image in one core's cache, so they win whenever the items split evenly enough (at least
// three quarters of the thread-time busy).
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

// out_n (OC, OH, OW) for one image inp_n (C, H, W). col: this thread's column buffer
// (unused when pointwise).
template <typename T>
void forward_image(T* out_n, const T* inp_n, const T* weight, const T* bias, const Conv2dGeometry& g,
                   const Dims& d, T* col) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
        const T* x_g = inp_n + grp * d.Cg * d.in_plane;
        const T* w_g = weight + grp * d.OCg * d.K;
        T* y_g = out_n + grp * d.OCg * d.plane;
        const T* cols = x_g;
        if (!d.pointwise) {
            im2col(col, x_g, d.Cg, g);
            cols = col;
        }
        // Start from the bias and let the GEMM add onto it (beta = 1), or overwrite (beta = 0).
        T beta = T(0);
        if (bias) {
            for (int64_t oc = 0; oc < d.OCg; ++oc)
                std::fill(y_g + oc * d.plane, y_g + (oc + 1) * d.plane, bias[grp * d.OCg + oc]);
            beta = T(1);
        }
        // y_g (OCg, OH*OW) = W_g (OCg, K) @ col (K, OH*OW)
        gemm<T>(false, false, d.OCg, d.plane, d.K, T(1), w_g, d.K, cols, d.plane, beta, y_g, d.plane);
    }
}

}  // namespace

int64_t conv2d_output_size(int64_t n, int64_t k, int64_t stride, int64_t pad_lo, int64_t pad_hi,
                           int64_t dilation) {
    const int64_t span = n + pad_lo + pad_hi - dilation * (k - 1) - 1;
    if (span < 0) return 0;
    return span / stride + 1;
}

template <typename T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g) {
    const Dims d = dims_of(g);
    const int64_t col_size = d.pointwise ? 0 : d.K * d.plane;
    const int nt = item_threads(g.N, g.OC * d.plane * d.K);
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t n = 0; n < g.N; ++n) {
        T* col = col_size ? column_buffer<T>(col_size) : nullptr;
        forward_image(out + n * g.OC * d.plane, inp + n * g.C * d.in_plane, weight, bias, g, d, col);
    }
}

// ---------------------------------------------------------------------------------------
// backward

namespace {

// One image's share of the weight and input gradients.
//   dw:    (OC, K) buffer the image's dW is added into (beta_w = 1) or written to (beta_w = 0);
//          null to skip the weight gradient.
//   dinp_n (C, H, W) overwritten with dL/dinp of this image; null to skip.
template <typename T>
void backward_image(T* dinp_n, T* dw, T beta_w, const T* dout_n, const T* inp_n, const T* weight,
                    const Conv2dGeometry& g, const Dims& d, T* col) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
        const T* dy = dout_n + grp * d.OCg * d.plane;
        const T* w_g = weight + grp * d.OCg * d.K;
        if (dw) {
            const T* x_g = inp_n + grp * d.Cg * d.in_plane;
            const T* cols = x_g;
            if (!d.pointwise) {
                im2col(col, x_g, d.Cg, g);
                cols = col;
            }
            // dW_g (OCg, K) += dY_g (OCg, OH*OW) @ col^T (OH*OW, K). K (the long side for
            // every usual layer) is the GEMM's N, its cheap side to pack and to split.
            gemm<T>(false, true, d.OCg, d.K, d.plane, T(1), dy, d.plane, cols, d.plane, beta_w,
                    dw + grp * d.OCg * d.K, d.K);
        }
        if (dinp_n) {
            T* dx = dinp_n + grp * d.Cg * d.in_plane;
            if (d.pointwise) {
                // dX_g (Cg, H*W) = W_g^T (Cg, OCg) @ dY_g (OCg, H*W), straight into the input grad.
                gemm<T>(true, false, d.Cg, d.plane, d.OCg, T(1), w_g, d.K, dy, d.plane, T(0), dx, d.plane);
            } else {
                // dcol (K, OH*OW) = W_g^T (K, OCg) @ dY_g (OCg, OH*OW), then scattered back. The
                // column buffer is free again (the weight gradient above is done with it).
                gemm<T>(true, false, d.K, d.plane, d.OCg, T(1), w_g, d.K, dy, d.plane, T(0), col, d.plane);
                col2im(dx, col, d.Cg, g);
            }
        }
    }
}

// dbias[oc] += sum over images and positions of dout[n, oc, :, :]; split over channels.
template <typename T>
void bias_backward(T* dbias, const T* dout, const Conv2dGeometry& g) {
    const int64_t plane = g.OH * g.OW;
    const int nt = threads_for(g.OC * g.N * plane, kCopyGrain);
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t oc = 0; oc < g.OC; ++oc) {
        T total = 0;
        for (int64_t n = 0; n < g.N; ++n) total += sum_of(dout + (n * g.OC + oc) * plane, plane);
        dbias[oc] += total;
    }
}

}  // namespace

template <typename T>
void conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     const Conv2dGeometry& g) {
    if (dbias) bias_backward(dbias, dout, g);
    if (!dinp && !dweight) return;
    const Dims d = dims_of(g);
    const int64_t col_size = d.pointwise ? 0 : d.K * d.plane;

    // The batch is cut into `slices` runs of consecutive images. Each run sums its images'
    // weight gradients into its own partial buffer (the first image writes, the rest add);
    // the partials are then added to dweight in slice order. The slices depend on the
    // shapes only, never on the thread count, so the result has the same bits at any thread
    // count. One slice (a batch of one, or a weight too large to copy) adds into dweight directly.
    const int64_t weight_size = g.OC * d.K;
    int64_t slices = g.N;
    if (dweight) slices = std::max<int64_t>(1, std::min({g.N, kMaxSlices, kPartialBudget / weight_size}));
    const bool use_partials = dweight && slices > 1;
    std::vector<T> partials(use_partials ? static_cast<size_t>(slices * weight_size) : 0);

    const int64_t macs_per_image = g.OC * d.plane * d.K * ((dweight ? 1 : 0) + (dinp ? 1 : 0));
    const int nt = item_threads(slices, macs_per_image * (g.N / slices));
#pragma omp parallel for if (nt > 1) num_threads(nt) schedule(static)
    for (int64_t s = 0; s < slices; ++s) {
        const int64_t n0 = s * g.N / slices, n1 = (s + 1) * g.N / slices;
        T* col = col_size ? column_buffer<T>(col_size) : nullptr;
        T* dw = use_partials ? partials.data() + s * weight_size : dweight;
        for (int64_t n = n0; n < n1; ++n) {
            const T beta_w = (use_partials && n == n0) ? T(0) : T(1);
            backward_image(dinp ? dinp + n * g.C * d.in_plane : nullptr, dw, beta_w,
                           dout + n * g.OC * d.plane, inp + n * g.C * d.in_plane, weight, g, d, col);
        }
    }

    if (use_partials) {
        const int nt_sum = threads_for(slices * weight_size, kCopyGrain);
#pragma omp parallel for if (nt_sum > 1) num_threads(nt_sum) schedule(static)
        for (int64_t i = 0; i < weight_size; ++i) {
            T total = partials[i];
            for (int64_t s = 1; s < slices; ++s) total += partials[s * weight_size + i];
            dweight[i] += total;
        }
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
