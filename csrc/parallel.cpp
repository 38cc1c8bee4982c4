// parallel.cpp: channel_sum (parallel.h).
#include "parallel.h"

#include <algorithm>
#include <vector>

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

// Column sums of a (rows, cols) matrix, columns c0 + [begin, end), added into acc[begin, end)
// (double): the rows in order, so each sum's order is fixed. Compiled per instruction set (simd.h):
// at baseline SSE2 converts and adds two doubles at a time, which made an LSTM's bias
// gradient (T*N = 3200 rows) cost as much as one of its recurrent steps' GEMMs.
template <typename T>
struct ColumnSums {
    const T* a;
    double* acc;
    int64_t rows, cols, c0;
    PYCORE_INLINE void operator()(int64_t begin, int64_t end) const {  // columns [begin, end) of the slice
        double* PYCORE_RESTRICT s = acc;
        for (int64_t r = 0; r < rows; ++r) {
            const T* PYCORE_RESTRICT row = a + r * cols + c0;
            for (int64_t c = begin; c < end; ++c) s[c] += static_cast<double>(row[c]);
        }
    }
};

}  // namespace

template <typename T>
void channel_sum(T* out, const T* x, int64_t outer, int64_t channels, int64_t inner) {
    if (inner == 1) {
        // Rows of an (outer, channels) matrix (Linear's and the recurrent layers' bias
        // gradients) added in row order in double, a block of columns per thread: the
        // reads stay contiguous along each row, and a float sum over thousands of rows
        // loses nothing to the order of the additions.
        const simd::Isa isa = simd::current_isa();
        parallel_rows(channels, outer, kSumGrain, [=](int64_t c0, int64_t c1) {
            std::vector<double> total(static_cast<size_t>(c1 - c0), 0.0);
            simd::run(isa, ColumnSums<T>{x, total.data(), outer, channels, c0}, 0, c1 - c0);
            for (int64_t c = c0; c < c1; ++c) out[c] += static_cast<T>(total[c - c0]);
        });
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
