// rnn.h: recurrent layers (Elman RNN, LSTM, GRU) over a whole sequence, one layer and
// one direction per call; the Python layer stacks layers.
//
// Layout (PyTorch's): time-major x (T, N, I), hidden state (N, H); per gate block G
// (1 for RNN, 4 for LSTM, 3 for GRU) the weights are stacked row blocks:
//   w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H), b_hh (G*H)
//   LSTM gates i, f, g, o:  i = s(W_ii x + b_ii + W_hi h + b_hi), f, o likewise,
//                           g = tanh(W_ig x + b_ig + W_hg h + b_hg)
//                           c' = f * c + i * g,   h' = o * tanh(c')
//   GRU gates r, z, n:      r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise,
//                           n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//                           h' = (1 - z) * n + z * h
//   RNN:                    h' = phi(W_ih x + b_ih + W_hh h + b_hh), phi = tanh or relu
//
// How the work is organised (both directions):
//   forward   one GEMM X (T*N, I) @ W_ih^T for every step at once, then per step one
//             GEMM h_{t-1} @ W_hh^T and one fused elementwise pass (biases, gate
//             nonlinearities, cell update), which saves what backward needs;
//   backward  per step (t = T-1 .. 0) one fused pass giving the gate gradients dG_t and
//             one GEMM dh_{t-1} = dG_t @ W_hh; then the parameter gradients as a few
//             large GEMMs over all steps (dW_ih += dG^T X, dW_hh += dG^T H_prev), the
//             bias gradients as column sums and dX = dG @ W_ih as one GEMM.
#pragma once
#include <cstdint>

namespace pycore {

enum RnnMode : int { kRnnTanh = 0, kRnnRelu = 1, kLstm = 2, kGru = 3 };

// Gate blocks per mode: 1 (RNN), 4 (LSTM), 3 (GRU). 0 for an unknown mode.
int64_t rnn_gate_count(int mode);

// Forward through T steps.
//   y          (T, N, H)    out: h_1 .. h_T (y[T-1] is the final hidden state)
//   gates      (T, N, G*H)  out: LSTM i, f, g, o and GRU r, z, n after their
//                           nonlinearities (saved for backward); RNN: scratch
//   cell       (T, N, H)    out: LSTM c_t; GRU W_hn h_{t-1} + b_hn (the term r scales);
//                           RNN: unused (may be null)
//   cell_tanh  (T, N, H)    out: LSTM tanh(c_t); null for RNN and GRU
//   x (T, N, I); h0, c0 (N, H) or null for a zero state (c0: LSTM only);
//   b_ih, b_hh (G*H) or null for a layer without biases.
template <typename T>
void rnn_forward(int mode, T* y, T* gates, T* cell, T* cell_tanh,
                 const T* x, const T* h0, const T* c0,
                 const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 int64_t steps, int64_t batch, int64_t input_size, int64_t hidden);

// Backward through time over the same T steps, reading what rnn_forward saved.
//   dx (T, N, I)    out, or null when the input gradient is not wanted (skips its GEMM)
//   dh0, dc0 (N, H) out: gradient of the initial state (dc0: LSTM only; either may be null)
//   dw_ih, dw_hh, db_ih, db_hh: accumulated (+=); biases null for a layer without them
//   dy (T, N, H)    gradient of every output, or null when only the final state has one
//   dh_n, dc_n (N, H) gradient of the final state (h_n == y[T-1]), or null for zero
//   y, gates, cell, cell_tanh, x, h0, c0, weights: as given to / filled by rnn_forward.
template <typename T>
void rnn_backward(int mode, T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                  const T* dy, const T* dh_n, const T* dc_n,
                  const T* y, const T* gates, const T* cell, const T* cell_tanh,
                  const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                  int64_t steps, int64_t batch, int64_t input_size, int64_t hidden);

}  // namespace pycore
