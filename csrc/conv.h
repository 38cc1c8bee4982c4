// conv.h: 2-D convolution (cross-correlation, as in every deep-learning library), NCHW.
//
//   out[n, oc, oh, ow] = bias[oc] + sum_{c, kh, kw} weight[oc, c, kh, kw]
//                        * inp[n, g*Cg + c, oh*sh - pad_top + kh*dh, ow*sw - pad_left + kw*dw]
//
// where g = oc / (OC/groups) is the group of output channel oc, Cg = C/groups, and input
// positions outside the image read as zero (zero padding). The kernel is not flipped.
//
// Shapes: inp (N, C, H, W), weight (OC, C/groups, KH, KW), bias (OC,), out (N, OC, OH, OW) with
//   OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1   (OW likewise).
//
// Both passes are im2col + pycore::gemm on a piece of the batch at a time (a tile of output
// rows of one image, or a few small images side by side), with per-thread column buffers,
// never a whole-batch one; except single-group convolutions with few output channels
// (LeNet's), whose forward and weight gradient a direct kernel computes without columns.
// See conv.cpp for the pieces, the choice and the threading.
#pragma once
#include <cstdint>

#include "gemm.h"  // Activation

namespace pycore {

// Every size of one convolution. The caller (the binding) has checked that the numbers
// are consistent: positive sizes, groups dividing C and OC, OH/OW from the formula above.
struct Conv2dGeometry {
    int64_t N, C, H, W;                  // input
    int64_t OC, KH, KW;                  // weight (OC, C/groups, KH, KW)
    int64_t OH, OW;                      // output
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_bottom, pad_left, pad_right;
    int64_t dilation_h, dilation_w;
    int64_t groups;
};

// Output size along one axis: floor((n + pad_lo + pad_hi - dilation*(k-1) - 1) / stride) + 1.
// May be <= 0 when the kernel does not fit; the caller rejects that.
int64_t conv2d_output_size(int64_t n, int64_t k, int64_t stride, int64_t pad_lo, int64_t pad_hi,
                           int64_t dilation);

// out (N, OC, OH, OW) = act(conv2d(inp, weight) + bias). bias may be null. `out` need not be
// zeroed. The bias and the activation (a fused Conv2d + ReLU/LeakyReLU/Tanh/Sigmoid) are
// the GEMM's epilogue: applied to each output tile as it is written (gemm.h).
template <typename T>
void conv2d_forward(T* out, const T* inp, const T* weight, const T* bias, const Conv2dGeometry& g,
                    Activation activation = Activation::kNone, T negative_slope = T(0));

// Gradients of conv2d_forward, given dout = dL/dout (N, OC, OH, OW):
//   dbias[oc]   += sum_{n, oh, ow} dout[n, oc, oh, ow]
//   dweight_g   += dout_g @ col(inp_g)^T      summed over images (OC/groups x C/groups*KH*KW per group)
//   dinp         = col2im(weight_g^T @ dout_g) (overwritten, not accumulated)
// Each of dinp, dweight, dbias may be null: that gradient is then not computed (a first
// layer skips dinp, which is most of its backward). The sums over images are taken in an
// order fixed by the shapes alone, so results are the same bits at every thread count.
template <typename T>
void conv2d_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     const Conv2dGeometry& g);

// How conv2d_forward computes: "auto" (a rule per shape, conv.cpp), "im2col" (columns in a
// per-thread buffer that the GEMM then packs), "implicit" (columns written by the GEMM
// straight into its packed panels) or "direct" (no columns: few output channels held in
// vectors, for single-group convolutions with at most 16 float / 8 double output channels;
// others take the auto path). For tests
// and measurements. Returns false for an unknown name. Process-wide.
bool conv2d_set_algorithm(const char* name);
const char* conv2d_algorithm();

}  // namespace pycore
