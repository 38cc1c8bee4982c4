// parallel.h: the three idioms kernels share for threads, so each lives in one place.
//
//   thread_scratch<Tag, T>(slot, count)   this thread's reusable buffer (no allocation per call)
//   parallel_rows(rows, work_per_row, grain, body)   rows split into contiguous parts, one per thread
//   channel_sum(out, x, outer, channels, inner)      out[c] += sum of channel c, in an order that
//                                                    does not depend on the thread count
//
// Used by conv.cpp (column buffers, bias gradient), rnn.cpp (bias gradients) and by
// linear_backward's bias gradient (through _C.channel_sum). Candidates for the same helpers:
// gemm.cpp's Scratch, rnn.cpp's and loss.cpp's per-thread buffers and row loops (see
// DEVELOPERS.md); PReLU's weight gradient sums its channels inside its own backward pass.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

#include "omp_guard.h"
#include "portable.h"
#include "threads.h"

namespace pycore {

// This thread's scratch buffer number `slot` (< kScratchSlots) for the caller `Tag` (any
// type private to the caller, so that two kernels never hand out the same buffer), at
// least `count` elements, 64-byte aligned, contents unspecified. It lives as long as the
// (pooled) thread and only grows, so repeated calls with the same shapes do not allocate;
// eight Python threads running kernels at once each get their own.
constexpr int kScratchSlots = 4;

template <class Tag, typename T>
T* thread_scratch(int slot, int64_t count) {
    struct Buffer {
        T* data = nullptr;
        int64_t capacity = 0;
        ~Buffer() { portable::aligned_free(data); }
    };
    thread_local Buffer buffers[kScratchSlots];
    Buffer& b = buffers[slot];
    if (count > b.capacity) {
        portable::aligned_free(b.data);
        b.data = nullptr, b.capacity = 0;
        const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64;
        b.data = static_cast<T*>(portable::aligned_allocate(64, bytes));
        if (!b.data) throw std::bad_alloc();
        b.capacity = count;
    }
    return b.data;
}

// body(r0, r1) over [0, rows) cut into contiguous parts, one per thread: as many threads
// as rows * work_per_row / grain asks for (threads_for), at most one per row. Serial
// (one call, body(0, rows)) for small work or inside another parallel region.
template <class Body>
void parallel_rows(int64_t rows, int64_t work_per_row, int64_t grain, const Body& body) {
    if (rows <= 0) return;
    const int64_t wanted = threads_for(rows * work_per_row, grain);
    const int nt = static_cast<int>(wanted < rows ? wanted : rows);
    if (nt <= 1) return body(int64_t(0), rows);
    RegionErrors errors;  // nothing may throw out of the region (omp_guard.h)
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int part = 0; part < nt; ++part) errors.run([&] { body(rows * part / nt, rows * (part + 1) / nt); });
    errors.rethrow();
}

// out[c] += sum_{o < outer, i < inner} x[(o * channels + c) * inner + i] for c < channels:
// a bias gradient (Linear: outer = rows, inner = 1; Conv2d: outer = N, inner = OH*OW).
// Each channel's sum is taken in a fixed order (inner runs by eight interleaved partial
// sums, then the runs left to right; inner == 1 adds chunks of 256 rows in row order, then
// the chunks in order, in double), so the bits do not depend on the thread count.
template <typename T>
void channel_sum(T* out, const T* x, int64_t outer, int64_t channels, int64_t inner);

}  // namespace pycore
