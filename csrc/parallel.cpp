// parallel.cpp: channel_sum (parallel.h).
#include "parallel.h"

#include <algorithm>
#include <vector>

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

}  // namespace

template <typename T>
void channel_sum(T* out, const T* x, int64_t outer, int64_t channels, int64_t inner) {
    if (inner == 1) {
        // Rows of a (outer, channels) matrix added in row order, a block of columns per
        // thread: the reads stay contiguous along each row.
        parallel_rows(channels, outer, kSumGrain, [=](int64_t c0, int64_t c1) {
            std::vector<T> total(static_cast<size_t>(c1 - c0), T(0));
            for (int64_t o = 0; o < outer; ++o) {
                const T* row = x + o * channels + c0;
                for (int64_t c = 0; c < c1 - c0; ++c) total[c] += row[c];
            }
            for (int64_t c = c0; c < c1; ++c) out[c] += total[c - c0];
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
