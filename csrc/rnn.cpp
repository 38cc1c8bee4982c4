// rnn.cpp: RNN, LSTM and GRU layers through time (the plan is in rnn.h).
//
// Sections:
//   1. fast nonlinearities (sigmoid, tanh) that vectorise;
//   2. the fused per-step elementwise passes, forward and backward side by side;
//   3. running a pass over the batch rows: SIMD variant and threads;
//   4. rnn_forward / rnn_backward: the GEMMs and the time loops.

#include "rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fastmath.h"
#include "gemm.h"
#include "memory.h"
#include "parallel.h"
#include "simd.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// The elementwise passes (sections 2-3) are functors with always-inline bodies, compiled
// for the baseline and for AVX2+FMA and chosen at run time by simd::run (simd.h).

namespace pycore {

int64_t rnn_gate_count(int mode) {
    switch (mode) {
        case kRnnTanh:
        case kRnnRelu: return 1;
        case kLstm: return 4;
        case kGru: return 3;
        default: return 0;
    }
}

namespace {

// ---------------------------------------------------------------------------------
// 1. Nonlinearities: fastmath::sigmoid and fastmath::tanh (fastmath.h). float: no
// branch and no library call, so the passes below vectorise; within 2.4 and 1.5 ulp.
// double: the C library, which the float64 finite-difference checks run on.

// ---------------------------------------------------------------------------------
// 2. Fused elementwise passes for one time step, over batch rows [n0, n1).
//
// Each functor holds the step's pointers (row-major (N, width) blocks) and H. The
// forward passes read the pre-activations that the GEMMs left in the gate buffer and
// add the biases here, once per element, instead of in a separate pass.

// Elman RNN forward: h_t = phi(a_t + b), a_t = x_t W_ih^T + h_{t-1} W_hh^T (in `pre`).
template <typename T, bool kRelu>
struct RnnForwardStep {
    const T* pre;    // (N, H) pre-activations without bias
    const T* bias;   // (H)    b_ih + b_hh
    T* h;            // (N, H) out: h_t
    int64_t H;
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            const T* PYCORE_RESTRICT a = pre + n * H;
            const T* PYCORE_RESTRICT b = bias;
            T* PYCORE_RESTRICT out = h + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < H; ++j) {
                const T v = a[j] + b[j];
                out[j] = kRelu ? fastmath::where_positive(v, v) : fastmath::tanh(v);
            }
        }
    }
};

// Elman RNN backward: dA_t = dh_t * phi'(.), written from h_t alone:
// tanh' = 1 - h^2, relu' = [h > 0].
template <typename T, bool kRelu>
struct RnnBackwardStep {
    const T* dh;     // (N, H) dL/dh_t
    const T* h;      // (N, H) h_t
    T* dgates;       // (N, H) out: dL/da_t
    int64_t H;
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            const T* PYCORE_RESTRICT d = dh + n * H;
            const T* PYCORE_RESTRICT hv = h + n * H;
            T* PYCORE_RESTRICT out = dgates + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < H; ++j)
                out[j] = kRelu ? fastmath::where_positive(hv[j], d[j]) : d[j] * (T(1) - hv[j] * hv[j]);
        }
    }
};

// LSTM forward. In: gates (N, 4H) = x_t W_ih^T + h_{t-1} W_hh^T, blocks i, f, g, o.
//   i = s(.+b_i), f = s(.+b_f), g = tanh(.+b_g), o = s(.+b_o)
//   c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)
// Out: gates overwritten with i, f, g, o; c_t, tanh(c_t) and h_t.
template <typename T>
struct LstmForwardStep {
    T* gates;
    T* cell;
    T* cell_tanh;
    T* h;
    const T* c_prev;
    const T* bias;   // (4H) b_ih + b_hh
    int64_t H;       // a row's gate blocks lie H apart
    int64_t units;   // hidden units computed per row: H, or a thread's slice of them (batch 1)
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            T* PYCORE_RESTRICT gi = gates + n * 4 * H;
            T* PYCORE_RESTRICT gf = gi + H;
            T* PYCORE_RESTRICT gg = gi + 2 * H;
            T* PYCORE_RESTRICT go = gi + 3 * H;
            const T* PYCORE_RESTRICT bi = bias;
            const T* PYCORE_RESTRICT bf = bias + H;
            const T* PYCORE_RESTRICT bg = bias + 2 * H;
            const T* PYCORE_RESTRICT bo = bias + 3 * H;
            const T* PYCORE_RESTRICT cp = c_prev + n * H;
            T* PYCORE_RESTRICT c = cell + n * H;
            T* PYCORE_RESTRICT tc = cell_tanh + n * H;
            T* PYCORE_RESTRICT hv = h + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < units; ++j) {
                const T i = fastmath::sigmoid(gi[j] + bi[j]);
                const T f = fastmath::sigmoid(gf[j] + bf[j]);
                const T g = fastmath::tanh(gg[j] + bg[j]);
                const T o = fastmath::sigmoid(go[j] + bo[j]);
                const T ct = f * cp[j] + i * g;
                const T tct = fastmath::tanh(ct);
                gi[j] = i, gf[j] = f, gg[j] = g, go[j] = o;
                c[j] = ct;
                tc[j] = tct;
                hv[j] = o * tct;
            }
        }
    }
};

// LSTM backward, from dh = dL/dh_t (dy_t, the loss's own gradient of y_t, plus what
// step t+1 passed back; the sum is formed here rather than in a separate pass over dh)
// and dc = dL/dc_t (from step t+1):
//   do = dh tanh(c_t);   dc_t = dc + dh o (1 - tanh(c_t)^2)
//   di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i;   dL/dc_{t-1} = dc_t f
// and through the nonlinearities: s' = s (1 - s), tanh' = 1 - tanh^2.
template <typename T>
struct LstmBackwardStep {
    T* dgates;         // (N, 4H) out
    T* dc;             // (N, H)  in: dL/dc_t from step t+1; out: dL/dc_{t-1}
    const T* dh;       // (N, H)  the part of dL/dh_t that step t+1 passed back
    const T* dy;       // (N, H)  dL/dy_t (zeros when only the final state has a gradient)
    const T* gates;    // (N, 4H) i, f, g, o
    const T* cell_tanh;
    const T* c_prev;
    int64_t H;       // as in LstmForwardStep
    int64_t units;
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            const T* PYCORE_RESTRICT gi = gates + n * 4 * H;
            const T* PYCORE_RESTRICT gf = gi + H;
            const T* PYCORE_RESTRICT gg = gi + 2 * H;
            const T* PYCORE_RESTRICT go = gi + 3 * H;
            T* PYCORE_RESTRICT di = dgates + n * 4 * H;
            T* PYCORE_RESTRICT df = di + H;
            T* PYCORE_RESTRICT dg = di + 2 * H;
            T* PYCORE_RESTRICT dout = di + 3 * H;
            const T* PYCORE_RESTRICT tc = cell_tanh + n * H;
            const T* PYCORE_RESTRICT cp = c_prev + n * H;
            const T* PYCORE_RESTRICT dhv = dh + n * H;
            const T* PYCORE_RESTRICT dyv = dy + n * H;
            T* PYCORE_RESTRICT dcv = dc + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < units; ++j) {
                const T i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j], d = dhv[j] + dyv[j];
                const T dct = dcv[j] + d * o * (T(1) - t * t);
                di[j] = dct * g * i * (T(1) - i);
                df[j] = dct * cp[j] * f * (T(1) - f);
                dg[j] = dct * i * (T(1) - g * g);
                dout[j] = d * t * o * (T(1) - o);
                dcv[j] = dct * f;
            }
        }
    }
};

// GRU forward. In: gates (N, 3H) = x_t W_ih^T (blocks r, z, n), hh (N, 3H) = h_{t-1} W_hh^T.
//   r = s(gx_r + gh_r + b_r),  z = s(gx_z + gh_z + b_z)   (b_r = b_ir + b_hr, ...)
//   hn = gh_n + b_hn,          n = tanh(gx_n + b_in + r hn),   h_t = (1 - z) n + z h_{t-1}
// Out: gates overwritten with r, z, n; hn (backward needs it: dr = dn' hn); h_t.
template <typename T>
struct GruForwardStep {
    T* gates;
    T* hn_out;
    T* h;
    const T* hh;
    const T* h_prev;
    const T* bias;     // (3H) b_ih + (b_hr, b_hz, 0)
    const T* bias_hn;  // (H)  b_hn
    int64_t H;
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            T* PYCORE_RESTRICT gr = gates + n * 3 * H;
            T* PYCORE_RESTRICT gz = gr + H;
            T* PYCORE_RESTRICT gn = gr + 2 * H;
            const T* PYCORE_RESTRICT hr = hh + n * 3 * H;
            const T* PYCORE_RESTRICT hz = hr + H;
            const T* PYCORE_RESTRICT hnn = hr + 2 * H;
            const T* PYCORE_RESTRICT br = bias;
            const T* PYCORE_RESTRICT bz = bias + H;
            const T* PYCORE_RESTRICT bn = bias + 2 * H;
            const T* PYCORE_RESTRICT bhn = bias_hn;
            const T* PYCORE_RESTRICT hp = h_prev + n * H;
            T* PYCORE_RESTRICT hno = hn_out + n * H;
            T* PYCORE_RESTRICT hv = h + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < H; ++j) {
                const T r = fastmath::sigmoid(gr[j] + hr[j] + br[j]);
                const T z = fastmath::sigmoid(gz[j] + hz[j] + bz[j]);
                const T hn = hnn[j] + bhn[j];
                const T nv = fastmath::tanh(gn[j] + bn[j] + r * hn);
                gr[j] = r, gz[j] = z, gn[j] = nv;
                hno[j] = hn;
                hv[j] = nv + z * (hp[j] - nv);
            }
        }
    }
};

// GRU backward, from dh = dL/dh_t:
//   dn = dh (1 - z),  dz = dh (h_{t-1} - n),  direct part of dL/dh_{t-1} = dh z
//   dn' = dn (1 - n^2)  (pre-tanh);  dr = dn' hn;  d(hn) = dn' r
// The input projection and the recurrent projection see different n-gate gradients
// (dn' versus dn' r), so they get separate buffers: dgx = (dr', dz', dn'),
// dgh = (dr', dz', dn' r).
template <typename T>
struct GruBackwardStep {
    T* dgates_x;      // (N, 3H) out
    T* dgates_h;      // (N, 3H) out
    T* dh;            // (N, H)  in: dL/dh_t; out: z * dL/dh_t (the GEMM adds the rest)
    const T* gates;   // (N, 3H) r, z, n
    const T* hn;      // (N, H)
    const T* h_prev;  // (N, H)
    int64_t H;
    PYCORE_INLINE void operator()(int64_t n0, int64_t n1) const {
        for (int64_t n = n0; n < n1; ++n) {
            const T* PYCORE_RESTRICT gr = gates + n * 3 * H;
            const T* PYCORE_RESTRICT gz = gr + H;
            const T* PYCORE_RESTRICT gn = gr + 2 * H;
            T* PYCORE_RESTRICT xr = dgates_x + n * 3 * H;
            T* PYCORE_RESTRICT xz = xr + H;
            T* PYCORE_RESTRICT xn = xr + 2 * H;
            T* PYCORE_RESTRICT hr = dgates_h + n * 3 * H;
            T* PYCORE_RESTRICT hz = hr + H;
            T* PYCORE_RESTRICT hnd = hr + 2 * H;
            const T* PYCORE_RESTRICT hnv = hn + n * H;
            const T* PYCORE_RESTRICT hp = h_prev + n * H;
            T* PYCORE_RESTRICT d = dh + n * H;
            PYCORE_IVDEP
            for (int64_t j = 0; j < H; ++j) {
                const T r = gr[j], z = gz[j], nv = gn[j], dv = d[j];
                const T dn_pre = dv * (T(1) - z) * (T(1) - nv * nv);
                const T dr_pre = dn_pre * hnv[j] * r * (T(1) - r);
                const T dz_pre = dv * (hp[j] - nv) * z * (T(1) - z);
                xr[j] = dr_pre, xz[j] = dz_pre, xn[j] = dn_pre;
                hr[j] = dr_pre, hz[j] = dz_pre, hnd[j] = dn_pre * r;
                d[j] = dv * z;
            }
        }
    }
};

// ---------------------------------------------------------------------------------
// 3. Running a pass over the batch rows.

// The AVX2 passes run whenever the GEMM uses AVX2 or AVX-512 micro-kernels; forcing
// the GEMM to "generic" forces these to the baseline too.
using simd::use_avx2;

// Elementwise work (gate elements) one thread should get before another one helps:
// a parallel region costs a few microseconds, a fused pass about a nanosecond per element.
constexpr int64_t kPointwiseGrain = 16384;

// Apply `step` to rows [0, rows), split over threads when the step is big enough.
template <class Step>
void for_rows(const Step& step, int64_t rows, int64_t work_per_row, bool avx2) {
    auto run = [&](int64_t n0, int64_t n1) { simd::run(avx2, step, n0, n1); };
    const int nt = static_cast<int>(
        std::min<int64_t>(rows, threads_for(rows * work_per_row, kPointwiseGrain)));
    if (nt <= 1) return run(0, rows);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int part = 0; part < nt; ++part) run(rows * part / nt, rows * (part + 1) / nt);
}

// dst[i] += src[i]
template <typename T>
void add_into(T* PYCORE_RESTRICT dst, const T* PYCORE_RESTRICT src, int64_t count) {
    for (int64_t i = 0; i < count; ++i) dst[i] += src[i];
}

// dst (cols, rows) = src (rows, cols)^T, both row-major, in tiles of kTile x kTile so that
// each tile's rows (kTile * 4 bytes = one 64-byte line for float) are read and written
// whole. A batch-1 forward transposes W_hh (4H, H) once per call: at H = 256 (1 MiB) this
// takes a few GEMV steps' time and saves about 2/3 of every step's GEMV (below).
template <typename T>
void transpose(T* PYCORE_RESTRICT dst, const T* PYCORE_RESTRICT src, int64_t rows, int64_t cols) {
    constexpr int64_t kTile = 16;
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
        const int64_t r1 = std::min(rows, r0 + kTile);
        for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
            const int64_t c1 = std::min(cols, c0 + kTile);
            for (int64_t c = c0; c < c1; ++c)
                for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
        }
    }
}

// ---------------------------------------------------------------------------------
// Batch 1: an LSTM's time loop over W_hh in column panels, in one parallel region.
//
// With N == 1 a step is a GEMV over W_hh (1 MiB at H = 256) and a gate pass over H units.
// Run as the general loop runs it on 2 threads, every step opens a parallel region for
// the GEMV, split by columns, then runs the gate pass on one thread. Here the threads enter
// one region for the whole sequence, each owning hidden units [u0, u1) (owned_units):
// forward, it computes its units' four gate columns (h_{t-1} @ W_hh^T) and their gate
// pass; backward, its units' gate pass and then its slice dh_{t-1}[u0:u1] = dG_t @
// W_hh[:, u0:u1]. One barrier per step waits for the rest of h_t (forward) or dG_t
// (backward). Each thread reads the same part of W_hh at every step, which stays in its
// core's L2.
//
// That part is read as contiguous panels of gemm_row_block() columns (128 floats on
// AVX-512, 64 on AVX2), one GEMV kernel call per panel: on a Zen 4 (AVX-512, K = 256, the
// kernel alone in a loop) 512 KiB read at 111 GB/s as four such panels against 71 GB/s as
// the same columns of a row-major (256, 1024) matrix; two threads with a barrier per step
// took 5.9 us per step over the whole 1 MiB (13.7 on one). The forward copies W_hh^T into
// panels, the backward W_hh, once per call (at H = 256 about one step's time), for
// sequences of kPanelMinSteps or more; a shorter backward reads W_hh in place in column
// slices of the same width. Batch-1 LSTM, H = 256, T = 256, best of 40 calls, against the
// loop per step before: 2 threads, forward 2.2-2.6 -> 1.9-2.2 ms, backward 3.5-3.8 ->
// 2.8-3.1 ms (AVX-512 and AVX2); 1 thread, backward 6.0-6.2 -> 5.6-6.0 ms (AVX-512; AVX2
// unchanged).
//
// One thread reads all of W_hh at every step, and at H = 256 (1 MiB, a Zen 4 core's L2)
// it does not stay in L2 when read in the same order each step. So the panels go in
// zigzag order (forward on even steps, in reverse on odd ones). On one thread, medians of
// 57 interleaved calls, T = 256: backward 5.78-6.17 -> 5.48-5.74 ms at H = 256, no change
// at 128 or 512. The forward takes the panels too once W_hh is kPanelMinBytes: 3.85-4.11
// -> 3.69-3.93 ms at H = 256, 17.1-17.4 -> 15.7-16.1 at 512; below that size, at H = 128,
// its 4 calls per step cost more than they save (0.91-0.94 -> 0.99-1.01 ms), so smaller
// ones keep the general loop.
//
// Units are cut at multiples of the GEMV's row block and H must be one, so every panel is
// whole column blocks and each value is the same sum whatever the thread count. Nothing in
// the region can throw (one-row products with a contiguous row allocate nothing), as a
// barrier inside it requires.
constexpr int64_t kPanelMinSteps = 8;
constexpr size_t kPanelMinBytes = size_t(1) << 20;

// A one-row product's right operand (K, n) as panels of `width` columns: panel p holds
// columns [p * width, (p + 1) * width), starts at data + p * stride, rows ld apart.
template <typename T>
struct ColumnPanels {
    const T* data;
    int64_t stride, ld, width;
    // c[0:width] = a[0:K] @ panel p + beta * c
    void product(int64_t p, int64_t K, const T* a, T beta, T* c) const {
        gemm<T>(false, false, 1, width, K, T(1), a, K, data + p * stride, ld, beta, c, width);
    }
};

// Threads for the region: as many as gemm's own GEMV would take for this product, at most
// one per panel of hidden units.
template <typename T>
int panel_threads(int64_t H) {
    return gemm_row_threads(4 * H, H, H / gemm_row_block<T>());
}

// Which of a step's `count` panels comes i-th: in order on even steps, in reverse on odd
// ones, so that a step starts on the panels the step before read last. When W_hh is about
// the size of L2 (1 MiB at H = 256) those are still there; in order, every panel would have
// been evicted by the others before it is read again. Each panel's sums are the same in
// either order.
inline int64_t zigzag(int64_t i, int64_t count, int64_t t) { return t & 1 ? count - 1 - i : i; }

// This thread's hidden units [*u0, *u1), whole panels of `width`: never empty, since the
// team has at most panel_threads() <= H / width threads.
inline void owned_units(int64_t H, int64_t width, int64_t* u0, int64_t* u1) {
#ifdef _OPENMP
    const int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();
#else
    const int64_t part = 0, parts = 1;
#endif
    const int64_t panels = H / width;
    *u0 = panels * part / parts * width;
    *u1 = panels * (part + 1) / parts * width;
}

// rnn_forward's LSTM loop for N == 1. w_t: W_hh^T in panels; h0 may be null (a zero
// state); c_prev0 is c0 or zeros.
template <typename T>
void lstm_forward_panels(int nt, T* y, T* gates, T* cell, T* cell_tanh, const ColumnPanels<T>& w_t,
                         const T* bias, const T* h0, const T* c_prev0, int64_t steps, int64_t H, bool avx2) {
    const int64_t width = w_t.width;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t u0, u1;
        owned_units(H, width, &u0, &u1);
        const T* h_prev = h0;
        const T* c_prev = c_prev0;
        for (int64_t t = 0; t < steps; ++t) {
            T* g_t = gates + t * 4 * H;
            if (h_prev) {  // gates_t += h_{t-1} @ W_hh^T, this thread's columns of each gate
                const int64_t per_gate = (u1 - u0) / width, count = 4 * per_gate;
                for (int64_t i = 0; i < count; ++i) {
                    const int64_t k = zigzag(i, count, t);
                    const int64_t j = k / per_gate * H + u0 + k % per_gate * width;
                    w_t.product(j / width, H, h_prev, T(1), g_t + j);
                }
            }
            simd::run(avx2,
                      LstmForwardStep<T>{g_t + u0, cell + t * H + u0, cell_tanh + t * H + u0, y + t * H + u0,
                                         c_prev + u0, bias + u0, H, u1 - u0},
                      0, 1);
            h_prev = y + t * H;
            c_prev = cell + t * H;
#pragma omp barrier
        }
    }
}

// rnn_backward's LSTM loop for N == 1. w: W_hh in panels; dh, dc hold dL/dh_T, dL/dc_T on
// entry and dL/dh_0 (when want_dh0), dL/dc_0 on return. dy_step is H, or 0 when dy is one
// row of zeros for every step.
template <typename T>
void lstm_backward_panels(int nt, T* dgates, T* dh, T* dc, const T* dy, int64_t dy_step, const T* gates,
                          const T* cell, const T* cell_tanh, const T* c_prev0, const ColumnPanels<T>& w,
                          int64_t steps, int64_t H, bool want_dh0, bool avx2) {
    const int64_t width = w.width;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t u0, u1;
        owned_units(H, width, &u0, &u1);
        for (int64_t t = steps - 1; t >= 0; --t) {
            const T* c_prev = t > 0 ? cell + (t - 1) * H : c_prev0;
            T* dg_t = dgates + t * 4 * H;
            simd::run(avx2,
                      LstmBackwardStep<T>{dg_t + u0, dc + u0, dh + u0, dy + t * dy_step + u0, gates + t * 4 * H + u0,
                                          cell_tanh + t * H + u0, c_prev + u0, H, u1 - u0},
                      0, 1);
            if (t == 0 && !want_dh0) break;
#pragma omp barrier
            // dh_{t-1}[u0:u1] = dG_t @ W_hh[:, u0:u1]
            const int64_t count = (u1 - u0) / width;
            for (int64_t i = 0; i < count; ++i) {
                const int64_t j = u0 + zigzag(i, count, t) * width;
                w.product(j / width, 4 * H, dg_t, T(0), dh + j);
            }
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------
// 4. The layer through time.

template <typename T>
void rnn_forward(int mode, T* y, T* gates, T* cell, T* cell_tanh,
                 const T* x, const T* h0, const T* c0,
                 const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 int64_t steps, int64_t batch, int64_t input_size, int64_t hidden) {
    const int64_t G = rnn_gate_count(mode), H = hidden, N = batch;
    const int64_t GH = G * H, NH = N * H;
    if (G == 0 || steps <= 0 || N <= 0 || H <= 0) return;
    const bool avx2 = use_avx2();

    // Biases, summed once: the fused pass adds b_ih + b_hh per gate. GRU keeps b_hn
    // apart because r multiplies (W_hn h + b_hn) but not b_in.
    std::vector<T> bias(static_cast<size_t>(GH), T(0)), bias_hn(static_cast<size_t>(H), T(0));
    if (b_ih) std::copy(b_ih, b_ih + GH, bias.begin());
    if (b_hh) {
        const int64_t shared = mode == kGru ? 2 * H : GH;
        for (int64_t k = 0; k < shared; ++k) bias[k] += b_hh[k];
        if (mode == kGru) std::copy(b_hh + 2 * H, b_hh + 3 * H, bias_hn.begin());
    }

    // Input projection of every step at once: gates (T*N, G*H) = X (T*N, I) @ W_ih^T.
    gemm<T>(false, true, steps * N, GH, input_size, T(1), x, input_size, w_ih, input_size, T(0),
            gates, GH);

    std::vector<T> zeros(static_cast<size_t>(h0 && (c0 || mode != kLstm) ? 0 : NH), T(0));
    const T* h_prev = h0 ? h0 : zeros.data();
    const T* c_prev = c0 ? c0 : zeros.data();

    // A batch-1 LSTM whose H is whole panels, on 2+ threads or with W_hh of kPanelMinBytes
    // or more: lstm_forward_panels. (A smaller W_hh on one thread: the general loop below,
    // one GEMV call per step instead of four.)
    const int64_t width = gemm_row_block<T>();
    const bool panels = mode == kLstm && N == 1 && H % width == 0 && steps >= kPanelMinSteps;
    const int panel_nt = panels ? panel_threads<T>(H) : 1;
    if (panels && (panel_nt > 1 || static_cast<size_t>(GH * H) * sizeof(T) >= kPanelMinBytes)) {
        memory::Scratch<T> w_t(static_cast<size_t>(GH * H));
        for (int64_t p = 0; p < GH / width; ++p)  // panel p = (rows p*width.. of W_hh)^T
            transpose(w_t.data() + p * H * width, w_hh + p * width * H, width, H);
        return lstm_forward_panels(panel_nt, y, gates, cell, cell_tanh,
                                   ColumnPanels<T>{w_t.data(), H * width, width, width}, bias.data(), h0, c_prev,
                                   steps, H, avx2);
    }

    // The recurrent product h_{t-1} (N, H) @ W_hh^T runs T times with the same W_hh, so
    // with N > 1 W_hh^T is packed into the GEMM's panels once (PackedMatrix) instead of at
    // every step. With N == 1 (GRU, RNN, an LSTM whose H is not whole panels) it is a
    // GEMV, which reads W_hh^T fastest as a plain
    // row-major (H, G*H) copy: the GEMV then adds scaled rows of it into vector sums
    // (no horizontal sums), where W_hh in place needs a dot product and a lane sum per
    // output. At H = 256 (W_hh 1 MiB, in L2/L3) one step's GEMV took 12 us against 36 us
    // in place (AVX-512, best of 15 on a loaded Zen 5); from 4 MiB up both read at memory
    // speed. The transposed copy costs a few steps, so a short sequence (an LSTMCell's
    // T = 1) reads W_hh in place.
    const bool one_row_transposed = N == 1 && steps >= kPanelMinSteps;
    const PackedMatrix<T> w_hh_t = N > 1 ? PackedMatrix<T>::pack_b(true, H, GH, w_hh, H) : PackedMatrix<T>();
    memory::Scratch<T> w_hh_rows(static_cast<size_t>(one_row_transposed ? GH * H : 0));
    if (one_row_transposed) transpose(w_hh_rows.data(), w_hh, GH, H);
    auto recurrent_product = [&](const T* h, T beta, T* out) {
        if (N > 1)
            gemm_packed_b<T>(false, N, T(1), h, H, w_hh_t, beta, out, GH);
        else if (one_row_transposed)
            gemm<T>(false, false, N, GH, H, T(1), h, H, w_hh_rows.data(), GH, beta, out, GH);
        else
            gemm<T>(false, true, N, GH, H, T(1), h, H, w_hh, H, beta, out, GH);
    };
    std::vector<T> hh(static_cast<size_t>(mode == kGru ? N * GH : 0));

    for (int64_t t = 0; t < steps; ++t) {
        T* g_t = gates + t * N * GH;
        T* y_t = y + t * NH;
        const bool has_h = h0 != nullptr || t > 0;  // a zero state contributes nothing
        if (mode == kGru) {
            // hh = h_{t-1} @ W_hh^T apart from the gates: r scales its n block.
            if (has_h)
                recurrent_product(h_prev, T(0), hh.data());
            else
                std::fill(hh.begin(), hh.end(), T(0));
            for_rows(GruForwardStep<T>{g_t, cell + t * NH, y_t, hh.data(), h_prev, bias.data(),
                                       bias_hn.data(), H},
                     N, GH, avx2);
        } else {
            // gates_t += h_{t-1} @ W_hh^T
            if (has_h) recurrent_product(h_prev, T(1), g_t);
            if (mode == kLstm) {
                for_rows(LstmForwardStep<T>{g_t, cell + t * NH, cell_tanh + t * NH, y_t, c_prev,
                                            bias.data(), H, H},
                         N, GH, avx2);
                c_prev = cell + t * NH;
            } else if (mode == kRnnRelu) {
                for_rows(RnnForwardStep<T, true>{g_t, bias.data(), y_t, H}, N, GH, avx2);
            } else {
                for_rows(RnnForwardStep<T, false>{g_t, bias.data(), y_t, H}, N, GH, avx2);
            }
        }
        h_prev = y_t;
    }
}

template <typename T>
void rnn_backward(int mode, T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                  const T* dy, const T* dh_n, const T* dc_n,
                  const T* y, const T* gates, const T* cell, const T* cell_tanh,
                  const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                  int64_t steps, int64_t batch, int64_t input_size, int64_t hidden) {
    const int64_t G = rnn_gate_count(mode), H = hidden, N = batch;
    const int64_t GH = G * H, NH = N * H, rows = steps * N;
    if (G == 0 || steps <= 0 || N <= 0 || H <= 0) return;
    const bool avx2 = use_avx2();

    // dgates (T, N, G*H): gradient w.r.t. the pre-activations, kept for the big GEMMs
    // after the loop. GRU needs a second one for the recurrent side (see GruBackwardStep).
    // From the pool (memory.h): at T*N*G*H floats (13 MB for the char model's layers) a
    // fresh allocation page-faults its way in again on every call.
    memory::Scratch<T> dgates(static_cast<size_t>(rows * GH));
    memory::Scratch<T> dgates_h_buf(static_cast<size_t>(mode == kGru ? rows * GH : 0));
    T* dgates_h = mode == kGru ? dgates_h_buf.data() : dgates.data();

    // dh: dL/dh_t for the step being processed (all paths), dc likewise for LSTM.
    std::vector<T> dh(static_cast<size_t>(NH), T(0)), dc(static_cast<size_t>(mode == kLstm ? NH : 0), T(0));
    if (dh_n) std::copy(dh_n, dh_n + NH, dh.begin());
    if (dc_n && mode == kLstm) std::copy(dc_n, dc_n + NH, dc.begin());
    std::vector<T> zeros(static_cast<size_t>(h0 && (c0 || mode != kLstm) ? 0 : NH), T(0));
    std::vector<T> no_dy(static_cast<size_t>(dy || mode != kLstm ? 0 : NH), T(0));

    // dL/dh_{t-1} = dG_t @ W_hh runs T times with the same W_hh: with N > 1 it is packed
    // into the GEMM's panels once. With N == 1 (a GEMV; an LSTM whose H is whole panels
    // takes lstm_backward_panels below instead) the GEMM's row-times-matrix path
    // reads W_hh (G*H, H) in place, a row of it per element of dG_t: the same speed as
    // reading a transposed copy, without the copy (which took 14% of a batch-1 LSTM
    // step's fwd+bwd at H = 256: a 1 MiB transpose per call).
    const PackedMatrix<T> w_hh_packed = N > 1 ? PackedMatrix<T>::pack_b(false, GH, H, w_hh, H) : PackedMatrix<T>();

    // A batch-1 LSTM whose H is whole panels: lstm_backward_panels, over a copy of W_hh in
    // panels, or for a short sequence over W_hh in place (each panel rows H apart).
    const int64_t width = gemm_row_block<T>();
    const bool panels = mode == kLstm && N == 1 && H % width == 0;
    const bool copy_panels = panels && steps >= kPanelMinSteps;
    memory::Scratch<T> w_panels(static_cast<size_t>(copy_panels ? GH * H : 0));
    if (copy_panels)
        for (int64_t p = 0; p < H / width; ++p)
            for (int64_t r = 0; r < GH; ++r)
                std::copy(w_hh + r * H + p * width, w_hh + r * H + (p + 1) * width,
                          w_panels.data() + (p * GH + r) * width);
    if (panels)
        lstm_backward_panels(panel_threads<T>(H), dgates.data(), dh.data(), dc.data(), dy ? dy : no_dy.data(),
                             dy ? H : 0, gates, cell, cell_tanh, c0 ? c0 : zeros.data(),
                             copy_panels ? ColumnPanels<T>{w_panels.data(), GH * width, width, width}
                                         : ColumnPanels<T>{w_hh, width, H, width},
                             steps, H, dh0 != nullptr, avx2);
    else
        for (int64_t t = steps - 1; t >= 0; --t) {
            const T* dy_t = dy ? dy + t * NH : no_dy.data();
            if (dy && mode != kLstm) add_into(dh.data(), dy_t, NH);  // LSTM's step adds it itself
            const T* g_t = gates + t * N * GH;
            T* dg_t = dgates.data() + t * N * GH;
            T* dgh_t = dgates_h + t * N * GH;
            const T* h_prev = t > 0 ? y + (t - 1) * NH : (h0 ? h0 : zeros.data());
            switch (mode) {
                case kLstm: {
                    const T* c_prev = t > 0 ? cell + (t - 1) * NH : (c0 ? c0 : zeros.data());
                    for_rows(LstmBackwardStep<T>{dg_t, dc.data(), dh.data(), dy_t, g_t, cell_tanh + t * NH, c_prev,
                                                 H, H},
                             N, GH, avx2);
                    break;
                }
                case kGru:
                    for_rows(GruBackwardStep<T>{dg_t, dgh_t, dh.data(), g_t, cell + t * NH, h_prev, H}, N,
                             GH, avx2);
                    break;
                case kRnnRelu:
                    for_rows(RnnBackwardStep<T, true>{dh.data(), y + t * NH, dg_t, H}, N, GH, avx2);
                    break;
                default:
                    for_rows(RnnBackwardStep<T, false>{dh.data(), y + t * NH, dg_t, H}, N, GH, avx2);
            }
            if (t == 0 && dh0 == nullptr) break;
            // dL/dh_{t-1} = dG_t @ W_hh (N, G*H) x (G*H, H); GRU adds it to its direct z term.
            const T beta = mode == kGru ? T(1) : T(0);
            if (N > 1)
                gemm_packed_b<T>(false, N, T(1), dgh_t, GH, w_hh_packed, beta, dh.data(), H);
            else
                gemm<T>(false, false, N, H, GH, T(1), dgh_t, GH, w_hh, H, beta, dh.data(), H);
        }
    if (dh0) std::copy(dh.begin(), dh.end(), dh0);
    if (dc0 && mode == kLstm) std::copy(dc.begin(), dc.end(), dc0);

    // Parameter gradients over all steps at once.
    //   dW_ih += dG^T (G*H, T*N) @ X (T*N, I)
    //   dW_hh += dGh[1:]^T @ Y[:-1] + dGh[0]^T @ h0    (h_{t-1} is y[t-1], or h0 at t = 0)
    gemm<T>(true, false, GH, input_size, rows, T(1), dgates.data(), GH, x, input_size, T(1), dw_ih,
            input_size);
    if (steps > 1)
        gemm<T>(true, false, GH, H, (steps - 1) * N, T(1), dgates_h + N * GH, GH, y, H, T(1), dw_hh, H);
    if (h0) gemm<T>(true, false, GH, H, N, T(1), dgates_h, GH, h0, H, T(1), dw_hh, H);
    //   db_ih += column sums of dG, db_hh += column sums of dGh (the same sums unless GRU)
    if (mode == kGru || !(db_ih && db_hh)) {
        if (db_ih) channel_sum(db_ih, dgates.data(), rows, GH, 1);
        if (db_hh) channel_sum(db_hh, dgates_h, rows, GH, 1);
    } else {
        std::vector<T> sums(static_cast<size_t>(GH), T(0));
        channel_sum(sums.data(), dgates.data(), rows, GH, 1);
        add_into(db_ih, sums.data(), GH);
        add_into(db_hh, sums.data(), GH);
    }
    // dX (T*N, I) = dG @ W_ih
    if (dx) gemm<T>(false, false, rows, input_size, GH, T(1), dgates.data(), GH, w_ih, input_size, T(0),
                    dx, input_size);
}

template void rnn_forward<float>(int, float*, float*, float*, float*, const float*, const float*,
                                 const float*, const float*, const float*, const float*, const float*,
                                 int64_t, int64_t, int64_t, int64_t);
template void rnn_forward<double>(int, double*, double*, double*, double*, const double*, const double*,
                                  const double*, const double*, const double*, const double*,
                                  const double*, int64_t, int64_t, int64_t, int64_t);
template void rnn_backward<float>(int, float*, float*, float*, float*, float*, float*, float*,
                                  const float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, int64_t, int64_t, int64_t, int64_t);
template void rnn_backward<double>(int, double*, double*, double*, double*, double*, double*, double*,
                                   const double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const double*, int64_t,
                                   int64_t, int64_t, int64_t);

}  // namespace pycore
