// parallel.cpp: channel_sum (parallel.h).
#include "parallel.h"

#include <algorithm>

#include "memory.h"
#include "simd.h"

namespace pycore {
namespace {

// Elements a thread should sum before a second one helps.
constexpr int64_t kSumGrain = int64_t(1) << 15;

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

// Column sums of a (rows, cols) matrix, columns [begin, end), added into acc[begin, end)
// (double): the rows in order, so each sum's order is fixed. Compiled per instruction set (simd.h):
// at baseline SSE2 converts and adds two doubles at a time, which made an LSTM's bias
// gradient (T*N = 3200 rows) cost as much as one of its recurrent steps' GEMMs.
template <typename T>
struct ColumnSums {
    const T* a;
    double* acc;
    int64_t rows, cols;
    PYCORE_INLINE void operator()(int64_t begin, int64_t end) const {
        double* PYCORE_RESTRICT s = acc;
        for (int64_t r = 0; r < rows; ++r) {
            const T* PYCORE_RESTRICT row = a + r * cols;
            for (int64_t c = begin; c < end; ++c) s[c] += static_cast<double>(row[c]);
        }
    }
};

// Rows per chunk of channel_sum's (outer, channels) case: a fixed number, so the order of
// the additions (each chunk's rows in order, then the chunks in order) does not depend
// on the thread count.
constexpr int64_t kRowsPerChunk = 256;

}  // namespace

template <typename T>
void channel_sum(T* out, const T* x, int64_t outer, int64_t channels, int64_t inner) {
    if (inner == 1) {
        // Rows of an (outer, channels) matrix (Linear's and the recurrent layers' bias
        // gradients), in double: each chunk of kRowsPerChunk rows summed in row order, then
        // the chunks' sums in order. A float sum over thousands of rows loses nothing to
        // that order. Threads take whole chunks, so each reads whole rows, one contiguous
        // run. A block of columns per thread over all rows (as before) read every row in
        // halves at 2 threads: the LSTM's 3200 x 1024 bias gradient took 1.4-1.9 ms there
        // against 0.7-1.0 ms on one thread, and takes 0.55-0.74 ms by chunks (Zen 4, inside
        // the layer's backward). Columns are split as well only when there are fewer chunks
        // than threads; that split does not change the bits.
        if (outer <= 0 || channels <= 0) return;
        const simd::Isa isa = simd::current_isa();
        const int64_t chunks = (outer + kRowsPerChunk - 1) / kRowsPerChunk;
        const int64_t nt = threads_for(outer * channels, kSumGrain);
        const int64_t column_parts = std::min<int64_t>(channels, (nt + chunks - 1) / chunks);
        memory::Scratch<double> partial(static_cast<size_t>(chunks * channels));
        std::fill(partial.data(), partial.data() + chunks * channels, 0.0);
        double* sums = partial.data();
        parallel_rows(chunks * column_parts, outer * channels / (chunks * column_parts), kSumGrain,
                      [=](int64_t task0, int64_t task1) {
                          for (int64_t task = task0; task < task1; ++task) {
                              const int64_t chunk = task / column_parts, part = task % column_parts;
                              const int64_t r0 = chunk * kRowsPerChunk, rows = std::min(kRowsPerChunk, outer - r0);
                              const int64_t c0 = channels * part / column_parts;
                              const int64_t c1 = channels * (part + 1) / column_parts;
                              simd::run(isa, ColumnSums<T>{x + r0 * channels, sums + chunk * channels, rows, channels},
                                        c0, c1);
                          }
                      });
        for (int64_t c = 0; c < channels; ++c) {
            double total = 0.0;
            for (int64_t chunk = 0; chunk < chunks; ++chunk) total += sums[chunk * channels + c];
            out[c] += static_cast<T>(total);
        }
        return;
    }
    parallel_rows(channels, outer * inner, kSumGrain, [=](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            T total = 0;
            for (int64_t o = 0; o < outer; ++o) total += sum_of(x + (o * channels + c) * inner, inner);
            out[c] += total;
        }
    });
}

template void channel_sum<float>(float*, const float*, int64_t, int64_t, int64_t);
template void channel_sum<double>(double*, const double*, int64_t, int64_t, int64_t);

}  // namespace pycore
