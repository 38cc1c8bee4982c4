"""Max and average 2-D pooling over planes: forward and backward, float32 and float64.

pycore/functional/pooling.py validates the arguments, computes the output size, views
(N, C, H, W) as N*C planes of (H, W) and allocates the outputs; the functions here only
run the loops. Planes are independent, so one `prange` over them parallelises every
kernel, and no two threads ever write the same memory.

Shapes: x, grad_x (P, H, W); y, grad_y, argmax (P, OH, OW); the window of output (oh, ow)
covers input rows oh*sh - ph + [0, kh) and columns ow*sw - pw + [0, kw).

Loop order. Each kernel walks one output row at a time and, for each offset (ki, kj) of
the window, sweeps the whole row: out[ow] op= x[oh*sh - ph + ki, ow*sw - pw + kj]. The
range of ow whose input column lies inside the image is computed once per call
(`ColumnRange`), so the innermost loop has no bounds tests and the compiler can
vectorise it. Each output still meets its window in row-major order, the order PyTorch
uses, so max ties pick the same element and sums add in the same order. The forward of
2x2 stride-2 max pooling (LeNet-5's) is pool2d_2x2.h's instead: whole windows a block of
outputs at a time, compiled per SIMD path (AVX-512, AVX2, the SSE2 baseline), with the
same rule and the same results.

Threads: the count comes from pycore._C.get_num_threads() (1 in a forked child, where
GNU OpenMP cannot start threads) and is read before the GIL is released. Planes are
handed out with schedule(guided): a thread that the OS has paused on a busy machine
does not hold up the others, and each plane is still computed by exactly one thread
with the same code, so results do not depend on the thread count or the schedule.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from pycore import _C

cdef extern from *:
    """
    #include <cstdint>
    #include "portable.h"  // PYCORE_NOINLINE (csrc/ is on this module's include path: setup.py)
    #include "pool2d_2x2.h"  // the forward of 2x2 stride-2 max pooling of a plane, per SIMD path
    // The max-pooling inner loops, in C++ so that they can say __restrict: with it (and
    // the comparisons written as selects) gcc vectorises them; without it, as Cython
    // emits them, it cannot rule out that best, position and x overlap and runs them
    // scalar, with branches that mispredict half the time on real data. 2x2 pooling of
    // (384, 28, 28) floats: 1000 us -> 60 us with the argmax, 40 us without.

    // best[ow], position[ow] <- x[ow*S], window_position where x is larger or NaN.
    template <class T, int S>
    PYCORE_NOINLINE static void pool2d_running_max(T* __restrict best, int32_t* __restrict position,
                                                   const T* __restrict x, int64_t begin, int64_t end,
                                                   int32_t window_position) {
        for (int64_t ow = begin; ow < end; ++ow) {
            const T v = x[ow * S];
            const bool take = (v > best[ow]) | (v != v);
            best[ow] = take ? v : best[ow];
            position[ow] = take ? window_position : position[ow];
        }
    }

    // One output row of 2x2 stride-2 average pooling: the window summed in the general
    // loop's order (starting from 0, so even the sign of a zero agrees), divided by 4.
    template <class T>
    PYCORE_NOINLINE static void pool2d_avg_row_2x2(T* __restrict y, const T* __restrict top,
                                                   const T* __restrict bottom, int64_t OW) {
        for (int64_t ow = 0; ow < OW; ++ow)
            y[ow] = (((T(0) + top[2 * ow]) + top[2 * ow + 1]) + bottom[2 * ow] + bottom[2 * ow + 1]) / T(4);
    }

    // Its gradient for one output row: each gy[ow] / 4 written to the four inputs of its
    // window in (top, bottom), and the columns past 2*OW (an odd W) zeroed; the same value
    // the general loop adds onto a zeroed row (T(0) + v: a -0 gradient becomes +0 there
    // too). One vectorised pass of stores, where the general loop zeroes the plane and then
    // adds with stride 2 (scalar): LeNet's (64, 16, 10, 10) took ~3x longer that way.
    template <class T>
    PYCORE_NOINLINE static void pool2d_avg_grad_row_2x2(T* __restrict top, T* __restrict bottom,
                                                        const T* __restrict gy, int64_t OW, int64_t W) {
        for (int64_t ow = 0; ow < OW; ++ow) {
            const T v = T(0) + gy[ow] / T(4);
            top[2 * ow] = v;
            top[2 * ow + 1] = v;
            bottom[2 * ow] = v;
            bottom[2 * ow + 1] = v;
        }
        for (int64_t w = 2 * OW; w < W; ++w) top[w] = bottom[w] = T(0);
    }
    """
    void running_max_1 "pool2d_running_max<float, 1>"(float* best, int32_t* position, const float* x, int64_t begin, int64_t end, int32_t window_position) noexcept nogil
    void running_max_1 "pool2d_running_max<double, 1>"(double* best, int32_t* position, const double* x, int64_t begin, int64_t end, int32_t window_position) noexcept nogil
    void running_max_2 "pool2d_running_max<float, 2>"(float* best, int32_t* position, const float* x, int64_t begin, int64_t end, int32_t window_position) noexcept nogil
    void running_max_2 "pool2d_running_max<double, 2>"(double* best, int32_t* position, const double* x, int64_t begin, int64_t end, int32_t window_position) noexcept nogil
    void avg_row_2x2 "pool2d_avg_row_2x2"(float* y, const float* top, const float* bottom, int64_t OW) noexcept nogil
    void avg_row_2x2 "pool2d_avg_row_2x2"(double* y, const double* top, const double* bottom, int64_t OW) noexcept nogil
    void avg_grad_row_2x2 "pool2d_avg_grad_row_2x2"(float* top, float* bottom, const float* gy, int64_t OW, int64_t W) noexcept nogil
    void avg_grad_row_2x2 "pool2d_avg_grad_row_2x2"(double* top, double* bottom, const double* gy, int64_t OW, int64_t W) noexcept nogil
    void max_plane_2x2 "pycore::pool2d::max_plane_2x2<float>"(int isa, float* y, int64_t* argmax, const float* x, int64_t W, int64_t OH, int64_t OW, bint relu) noexcept nogil
    void max_plane_2x2 "pycore::pool2d::max_plane_2x2<double>"(int isa, double* y, int64_t* argmax, const double* x, int64_t W, int64_t OH, int64_t OW, bint relu) noexcept nogil

ctypedef fused real:
    float
    double

# Input elements per thread below which starting another thread costs more than it saves.
# The vectorised loops take 0.2-0.7 ns per input element on one thread, so 131072 elements
# are 25-90 us of work: a second thread for less gains a few microseconds on a quiet
# machine and, on a busy one, can wait a scheduler tick for its core (measured under load
# with 16384: LeNet's (64, 16, 10, 10) 2x2 max pooling took 27 ms at 2 threads against
# 0.07 ms at 1; with 65536 its 2x2 average backward, 102400 elements, took 37 us at 2
# threads against 35 us at 1). LeNet's conv1 pooling, (64, 6, 28, 28), 301056 elements,
# still gets two threads (average backward 70 us against 93 us at 1; Zen 5, under load).
cdef int64_t GRAIN_ELEMENTS = 131072


cdef int threads_for(int64_t planes, int64_t plane_size):
    """min(configured threads, planes, work / grain), at least 1 (as threads.h's threads_for)."""
    cdef int64_t wanted = (planes * plane_size + GRAIN_ELEMENTS - 1) // GRAIN_ELEMENTS
    cdef int64_t n = _C.get_num_threads()
    if wanted < n:
        n = wanted
    if planes < n:
        n = planes
    return <int>max(n, 1)


cdef int64_t thread_slice(int64_t count, size_t itemsize) noexcept nogil:
    """Elements between two threads' scratch rows of `count` items: the row rounded up to
    a 64-byte cache line, plus one line, so that no line holds two threads' rows whatever
    malloc's alignment. Rows packed back to back shared a line (OW = 32 int32 positions,
    128 bytes, from a 16-byte aligned malloc), written 9 times per output row of a 3x3
    max pooling: at 2 threads (64, 64, 32, 32) k3 s1 p1 took 69 ms against 50 ms at 1."""
    return ((<int64_t>(count * itemsize) + 63) // 64 + 1) * 64 // <int64_t>itemsize


cdef int simd_code():
    """The SIMD path the kernels run on, as pool2d_2x2.h takes it: 2 AVX-512, 1 AVX2, 0 the
    baseline (pycore.set_simd_path / PYCORE_SIMD move it with the GEMM's)."""
    path = _C.simd_path()
    return 2 if path == "avx512f" else 1 if path == "avx2+fma" else 0


def _check_planes(outputs, inputs):
    """The last line of defence for direct calls: every array has the same number of planes,
    and arrays sharing the output geometry share their shape. The loops clip every read and
    write of the (H, W) planes to the image, so this is all memory safety needs."""
    planes = {a.shape[0] for a in outputs + inputs}
    if len(planes) != 1 or len({a.shape for a in outputs}) != 1:
        raise ValueError("pool2d: arrays disagree on their planes or output shape: "
                         + ", ".join(str(a.shape) for a in outputs + inputs))


def _check_window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw):
    """The window's sizes, bounded as pycore.functional.pooling bounds them (MAX_KERNEL_SIDE,
    MAX_WINDOW, MAX_STRIDE), so that no size product below can wrap: window positions are
    int32 and the tables hold kw and kh*kw entries."""
    # (kh*kw is taken only once both are <= 2**16, so that it cannot wrap itself.)
    if not (1 <= kh <= 65536 and 1 <= kw <= 65536) or kh * kw > 16777216:
        raise ValueError(f"pool2d: kernel ({kh}, {kw}) must have sides in [1, 2**16] and at most 2**24 elements")
    if not (1 <= sh <= 2 ** 62 and 1 <= sw <= 2 ** 62):
        raise ValueError(f"pool2d: stride ({sh}, {sw}) must lie in [1, 2**62]")
    if not (0 <= ph <= kh // 2 and 0 <= pw <= kw // 2):
        raise ValueError(f"pool2d: padding ({ph}, {pw}) must lie in [0, kernel // 2]")


cdef struct ColumnRange:
    # For one kernel column kj: outputs ow in [begin, end) read an input column inside
    # the image, iw = ow*sw + offset with offset = kj - pw.
    int64_t begin
    int64_t end
    int64_t offset


cdef ColumnRange* column_ranges(int64_t kw, int64_t sw, int64_t pw, int64_t W, int64_t OW) nogil:
    """The ColumnRange of every kj in [0, kw), in one malloc'd array the caller frees."""
    cdef ColumnRange* ranges = <ColumnRange*>malloc(kw * sizeof(ColumnRange))
    cdef int64_t kj, offset, begin, end
    if ranges == NULL:
        return NULL
    for kj in range(kw):
        offset = kj - pw
        # smallest ow with ow*sw + offset >= 0
        begin = 0 if offset >= 0 else (-offset + sw - 1) // sw
        # one past the largest ow with ow*sw + offset <= W - 1
        end = 0 if W - 1 - offset < 0 else (W - 1 - offset) // sw + 1
        ranges[kj].begin = min(begin, OW)
        ranges[kj].end = min(end, OW)
        ranges[kj].offset = offset
    return ranges


cdef inline void row_span(int64_t oh, int64_t kh, int64_t sh, int64_t ph, int64_t H,
                          int64_t* ih0, int64_t* ki_begin, int64_t* ki_end) noexcept nogil:
    """Window rows of output row oh: ih = ih0 + ki for ki in [ki_begin, ki_end) lie inside the image."""
    ih0[0] = oh * sh - ph
    ki_begin[0] = max(-ih0[0], 0)
    ki_end[0] = min(kh, H - ih0[0])


# ---------------------------------------------------------------------------------------
# The three inner loops, over one output row. Each is called through a dispatcher that
# passes the stride as the constant 1 or 2 when it is one of those, so that the compiler,
# inlining, sees a unit or stride-2 access it can vectorise.

cdef inline void running_max(real* best, int32_t* position, const real* x, int64_t begin, int64_t end,
                             int64_t stride, int32_t window_position) noexcept nogil:
    """best[ow], position[ow] <- x[ow*stride], window_position where x is larger or NaN."""
    cdef int64_t ow
    cdef real v
    cdef bint take
    for ow in range(begin, end):
        v = x[ow * stride]
        take = (v > best[ow]) | (v != v)
        best[ow] = v if take else best[ow]
        position[ow] = window_position if take else position[ow]


cdef inline void running_max_strided(real* best, int32_t* position, const real* x, int64_t begin,
                                     int64_t end, int64_t stride, int32_t window_position) noexcept nogil:
    if stride == 1:
        running_max_1(best, position, x, begin, end, window_position)
    elif stride == 2:
        running_max_2(best, position, x, begin, end, window_position)
    else:
        running_max(best, position, x, begin, end, stride, window_position)


cdef inline void add_gathered(real* total, const real* x, int64_t begin, int64_t end, int64_t stride) noexcept nogil:
    """total[ow] += x[ow*stride]."""
    cdef int64_t ow
    if stride == 1:
        for ow in range(begin, end):
            total[ow] += x[ow]
    elif stride == 2:
        for ow in range(begin, end):
            total[ow] += x[2 * ow]
    else:
        for ow in range(begin, end):
            total[ow] += x[ow * stride]


cdef inline void add_scattered(real* out, const real* value, int64_t begin, int64_t end, int64_t stride) noexcept nogil:
    """out[ow*stride] += value[ow]."""
    cdef int64_t ow
    if stride == 1:
        for ow in range(begin, end):
            out[ow] += value[ow]
    elif stride == 2:
        for ow in range(begin, end):
            out[2 * ow] += value[ow]
    else:
        for ow in range(begin, end):
            out[ow * stride] += value[ow]


# ---------------------------------------------------------------------------------------
# max_pool2d
# y[p, oh, ow] = max over the window of x[p], padding counting as -inf; argmax[p, oh, ow]
# is the flat index ih*W + iw of that maximum in x[p] (the first one in row-major order;
# a NaN wins and propagates, as in PyTorch).
# grad_x[p, argmax[p, o]] += grad_y[p, o]: each output routes its gradient to its maximum.

cdef inline real relu_value(real v) noexcept nogil:
    """max(v, 0) with NaN kept, as elementwise.cpp's relu."""
    return 0 if v <= 0 else v


cdef inline bint two_by_two(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            int64_t H, int64_t W, int64_t OH, int64_t OW) noexcept nogil:
    """Kernel 2, stride 2, no padding, and every window inside the image (not ceil_mode's
    partial last window): pool2d_2x2.h's case."""
    return kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and 2 * OH <= H and 2 * OW <= W


cdef void max_pool_plane(real* y, int64_t* argmax, int32_t* position, const real* x,
                         const ColumnRange* cols, const int64_t* window_offset, int64_t H, int64_t W,
                         int64_t OH, int64_t OW, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, bint relu) noexcept nogil:
    """One plane. `position` (OW, per thread) holds the winner of each window of the current
    row as ki*kw + kj, a loop invariant of the inner loop; at the row's end
    window_offset[position] = ki*W + kj turns it into the flat argmax (no division).
    relu: y = max(y, 0) as each row is finished (relu then max pooling, fused).
    argmax may be NULL (inference: no backward will read it)."""
    cdef int64_t oh, ow, ki, kj, ih0, ki_begin, ki_end
    cdef real* y_row
    cdef int64_t* arg_row
    cdef const real* x_row
    for oh in range(OH):
        y_row = y + oh * OW
        row_span(oh, kh, sh, ph, H, &ih0, &ki_begin, &ki_end)
        # Start from -inf at the window's first element inside the image, as PyTorch
        # does: a window of -inf values then points at that element.
        for ow in range(OW):
            y_row[ow] = -INFINITY
            position[ow] = <int32_t>(ki_begin * kw + max(pw - ow * sw, 0))
        for ki in range(ki_begin, ki_end):
            x_row = x + (ih0 + ki) * W
            for kj in range(kw):
                running_max_strided(y_row, position, x_row + cols[kj].offset, cols[kj].begin, cols[kj].end,
                                    sw, <int32_t>(ki * kw + kj))
        if argmax != NULL:
            arg_row = argmax + oh * OW
            for ow in range(OW):
                arg_row[ow] = ih0 * W + ow * sw - pw + window_offset[position[ow]]
        if relu:
            for ow in range(OW):
                y_row[ow] = relu_value(y_row[ow])


cdef void max_pool_forward_impl(real[:, :, ::1] y, int64_t[:, :, ::1] argmax, const real[:, :, ::1] x,
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                bint relu):
    cdef int64_t P = x.shape[0], H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef int64_t p
    cdef int nthreads = threads_for(P, H * W)
    cdef int64_t* arg_base = NULL
    cdef ColumnRange* cols
    cdef int32_t* positions
    cdef int64_t position_stride = thread_slice(OW, sizeof(int32_t))
    cdef int64_t* window_offset
    cdef int isa
    if P == 0:
        return
    if argmax is not None:
        arg_base = &argmax[0, 0, 0]
    if two_by_two(kh, kw, sh, sw, ph, pw, H, W, OH, OW):
        # The 2x2 pass with its int64 argmax takes 0.9 ns per input element on LeNet's
        # (64, 6, 28, 28) and 1.8 ns on (64, 16, 10, 10) (rows of 5 outputs), above the
        # grain's 0.2-0.7: counted twice, both get two threads (AVX2, this Xeon: 0.27 -> 0.14
        # and 0.18 -> 0.10 ms; with 4x the grain, as first set, both stayed on one).
        nthreads = threads_for(P, H * W * 2)
        isa = simd_code()
        with nogil:
            for p in prange(P, num_threads=nthreads, schedule="guided"):
                max_plane_2x2(isa, &y[p, 0, 0], <int64_t*>NULL if arg_base == NULL else arg_base + p * OH * OW,
                              &x[p, 0, 0], W, OH, OW, relu)
        return
    cols = column_ranges(kw, sw, pw, W, OW)
    positions = <int32_t*>malloc(nthreads * position_stride * sizeof(int32_t))
    window_offset = <int64_t*>malloc(kh * kw * sizeof(int64_t))
    if cols == NULL or positions == NULL or window_offset == NULL:
        free(cols)
        free(positions)
        free(window_offset)
        raise MemoryError()
    for p in range(kh * kw):
        window_offset[p] = (p // kw) * W + p % kw
    with nogil:
        for p in prange(P, num_threads=nthreads, schedule="guided"):
            max_pool_plane(&y[p, 0, 0], <int64_t*>NULL if arg_base == NULL else arg_base + p * OH * OW,
                           positions + threadid() * position_stride, &x[p, 0, 0], cols, window_offset,
                           H, W, OH, OW, kh, kw, sh, sw, ph, pw, relu)
    free(cols)
    free(positions)
    free(window_offset)


def max_pool2d_forward(y, argmax, x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bint relu=False):
    """Fill y (P, OH, OW) and argmax (P, OH, OW, int64; None: not wanted) from x (P, H, W),
    all C-contiguous. relu=True: y = max(max_pool(x), 0) = max_pool(relu(x)), in the same pass."""
    _check_window(kh, kw, sh, sw, ph, pw)
    _check_planes([y] + ([] if argmax is None else [argmax]), [x])
    if x.dtype.itemsize == 4:
        max_pool_forward_impl[float](y, argmax, x, kh, kw, sh, sw, ph, pw, relu)
    else:
        max_pool_forward_impl[double](y, argmax, x, kh, kw, sh, sw, ph, pw, relu)


cdef int64_t max_pool_backward_impl(real[:, :, ::1] grad_x, const int64_t[:, :, ::1] argmax,
                                    const real[:, :, ::1] grad_y, const real[:, :, ::1] y, bint relu):
    """The scatter; returns how many argmax entries lay outside their plane (and were skipped).
    relu: y is the fused forward's output, and only outputs with y > 0 pass their gradient
    (relu_backward's rule)."""
    cdef int64_t P = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef int64_t n_out = grad_y.shape[1] * grad_y.shape[2]
    cdef int64_t p, o, at, out_of_range = 0
    cdef int nthreads = threads_for(P, H * W)
    cdef real* gx
    cdef const real* gy
    cdef const int64_t* arg
    cdef const real* out
    with nogil:
        for p in prange(P, num_threads=nthreads, schedule="guided"):
            gx = &grad_x[p, 0, 0]
            gy = &grad_y[p, 0, 0]
            arg = &argmax[p, 0, 0]
            out = &y[p, 0, 0]
            memset(gx, 0, H * W * sizeof(real))
            for o in range(n_out):
                at = arg[o]
                if at < 0 or at >= H * W:  # only a hand-made argmax can get here
                    out_of_range += 1
                elif not relu or out[o] > 0:
                    gx[at] += gy[o]
    return out_of_range


def max_pool2d_backward(grad_x, argmax, grad_y, y=None):
    """grad_x (P, H, W) = the scatter of grad_y (P, OH, OW) to the saved argmax positions.
    y: the output of a relu=True forward; then outputs with y <= 0 (or NaN) pass no gradient."""
    cdef int64_t out_of_range
    cdef bint relu = y is not None
    _check_planes([grad_y, argmax] + ([y] if relu else []), [grad_x])
    if grad_x.shape[0] == 0:
        return
    if relu and y.dtype != grad_y.dtype:
        raise TypeError(f"pool2d: y has dtype {y.dtype}, grad_y {grad_y.dtype}")
    if grad_x.dtype.itemsize == 4:
        out_of_range = max_pool_backward_impl[float](grad_x, argmax, grad_y, y if relu else grad_y, relu)
    else:
        out_of_range = max_pool_backward_impl[double](grad_x, argmax, grad_y, y if relu else grad_y, relu)
    if out_of_range:
        raise ValueError(f"argmax: {out_of_range} indices lie outside the input plane of "
                         f"{grad_x.shape[1]}x{grad_x.shape[2]}; pass the argmax that max_pool2d_with_indices returned")


# ---------------------------------------------------------------------------------------
# avg_pool2d
# y[p, oh, ow] = (sum of the window's elements inside the image) / divisor, where the
# divisor counts the window's positions inside the image, or with count_include_pad those
# inside the padded image (H + 2ph, W + 2pw) but never the ones past it that ceil_mode
# adds; PyTorch's rule. grad_x[p, window] += grad_y[p, oh, ow] / divisor.

cdef int64_t* column_divisors(int64_t OW, int64_t kw, int64_t sw, int64_t pw, int64_t W,
                              bint count_include_pad) nogil:
    """Columns each output window counts in its divisor, one malloc'd array the caller frees."""
    cdef int64_t* counts = <int64_t*>malloc(max(OW, 1) * sizeof(int64_t))
    cdef int64_t ow, begin, end
    if counts == NULL:
        return NULL
    for ow in range(OW):
        begin = ow * sw - pw
        end = min(begin + kw, W + pw)
        if not count_include_pad:
            begin = max(begin, 0)
            end = min(end, W)
        counts[ow] = end - begin
    return counts


cdef inline int64_t row_divisor(int64_t ih0, int64_t kh, int64_t ph, int64_t H,
                                bint count_include_pad) noexcept nogil:
    cdef int64_t begin = ih0, end = min(ih0 + kh, H + ph)
    if not count_include_pad:
        begin = max(begin, 0)
        end = min(end, H)
    return end - begin


cdef void avg_pool_plane(real* y, const real* x, const ColumnRange* cols, const int64_t* col_count,
                         int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, bint count_include_pad) noexcept nogil:
    cdef int64_t oh, ow, ki, kj, ih0, ki_begin, ki_end, rows
    cdef real* y_row
    cdef const real* x_row
    if two_by_two(kh, kw, sh, sw, ph, pw, H, W, OH, OW):
        for oh in range(OH):
            avg_row_2x2(y + oh * OW, x + 2 * oh * W, x + (2 * oh + 1) * W, OW)
        return
    for oh in range(OH):
        y_row = y + oh * OW
        row_span(oh, kh, sh, ph, H, &ih0, &ki_begin, &ki_end)
        for ow in range(OW):
            y_row[ow] = 0
        for ki in range(ki_begin, ki_end):
            x_row = x + (ih0 + ki) * W
            for kj in range(kw):
                add_gathered(y_row, x_row + cols[kj].offset, cols[kj].begin, cols[kj].end, sw)
        rows = row_divisor(ih0, kh, ph, H, count_include_pad)
        for ow in range(OW):
            y_row[ow] = y_row[ow] / <real>(rows * col_count[ow])


cdef void avg_pool_grad_plane(real* gx, const real* gy, real* scaled, const ColumnRange* cols,
                              const int64_t* col_count, int64_t H, int64_t W, int64_t OH, int64_t OW,
                              int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                              bint count_include_pad) noexcept nogil:
    cdef int64_t oh, ow, ki, kj, ih0, ki_begin, ki_end, rows
    cdef real* gx_row
    cdef const real* gy_row
    if two_by_two(kh, kw, sh, sw, ph, pw, H, W, OH, OW):
        for oh in range(OH):
            avg_grad_row_2x2(gx + 2 * oh * W, gx + (2 * oh + 1) * W, gy + oh * OW, OW, W)
        memset(gx + 2 * OH * W, 0, (H - 2 * OH) * W * sizeof(real))  # an odd H's last row
        return
    memset(gx, 0, H * W * sizeof(real))
    for oh in range(OH):
        gy_row = gy + oh * OW
        row_span(oh, kh, sh, ph, H, &ih0, &ki_begin, &ki_end)
        rows = row_divisor(ih0, kh, ph, H, count_include_pad)
        for ow in range(OW):
            scaled[ow] = gy_row[ow] / <real>(rows * col_count[ow])
        for ki in range(ki_begin, ki_end):
            gx_row = gx + (ih0 + ki) * W
            for kj in range(kw):
                add_scattered(gx_row + cols[kj].offset, scaled, cols[kj].begin, cols[kj].end, sw)


cdef void avg_pool_impl(real[:, :, ::1] out, const real[:, :, ::1] inp, bint backward,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        bint count_include_pad):
    """Forward (out = y, inp = x) or backward (out = grad_x, inp = grad_y)."""
    cdef int64_t P = out.shape[0]
    cdef int64_t H, W, OH, OW, p
    if backward:
        H, W, OH, OW = out.shape[1], out.shape[2], inp.shape[1], inp.shape[2]
    else:
        H, W, OH, OW = inp.shape[1], inp.shape[2], out.shape[1], out.shape[2]
    cdef int nthreads = threads_for(P, H * W)
    cdef ColumnRange* cols
    cdef int64_t* col_count
    cdef real* scaled = NULL
    cdef int64_t scaled_stride = thread_slice(max(OW, 1), sizeof(real))
    if P == 0:
        return
    cols = column_ranges(kw, sw, pw, W, OW)
    col_count = column_divisors(OW, kw, sw, pw, W, count_include_pad)
    if backward:
        # One row of grad_y / divisor per thread.
        scaled = <real*>malloc(nthreads * scaled_stride * sizeof(real))
    if cols == NULL or col_count == NULL or (backward and scaled == NULL):
        free(cols)
        free(col_count)
        free(scaled)
        raise MemoryError()
    with nogil:
        if not backward:
            for p in prange(P, num_threads=nthreads, schedule="guided"):
                avg_pool_plane(&out[p, 0, 0], &inp[p, 0, 0], cols, col_count,
                               H, W, OH, OW, kh, kw, sh, sw, ph, pw, count_include_pad)
        else:
            for p in prange(P, num_threads=nthreads, schedule="guided"):
                avg_pool_grad_plane(&out[p, 0, 0], &inp[p, 0, 0], scaled + threadid() * scaled_stride, cols,
                                    col_count, H, W, OH, OW, kh, kw, sh, sw, ph, pw, count_include_pad)
    free(cols)
    free(col_count)
    free(scaled)


def avg_pool2d_forward(y, x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       bint count_include_pad):
    """Fill y (P, OH, OW) with the window averages of x (P, H, W), both C-contiguous."""
    _check_window(kh, kw, sh, sw, ph, pw)
    _check_planes([y], [x])
    if x.dtype.itemsize == 4:
        avg_pool_impl[float](y, x, False, kh, kw, sh, sw, ph, pw, count_include_pad)
    else:
        avg_pool_impl[double](y, x, False, kh, kw, sh, sw, ph, pw, count_include_pad)


def avg_pool2d_backward(grad_x, grad_y, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                        int64_t pw, bint count_include_pad):
    """Fill grad_x (P, H, W) from grad_y (P, OH, OW): each output spreads grad/divisor over its window."""
    _check_window(kh, kw, sh, sw, ph, pw)
    _check_planes([grad_y], [grad_x])
    if grad_x.dtype.itemsize == 4:
        avg_pool_impl[float](grad_x, grad_y, True, kh, kw, sh, sw, ph, pw, count_include_pad)
    else:
        avg_pool_impl[double](grad_x, grad_y, True, kh, kw, sh, sw, ph, pw, count_include_pad)
