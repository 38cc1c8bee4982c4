// threads.h: how many OpenMP threads pycore's kernels use.
//
// The count is one process-wide value read once at the start of each kernel and
// passed to every parallel region with num_threads(n). We never call
// omp_set_num_threads(): that sets a per-thread ICV, so a call from one Python
// thread would not reach kernels started from another, and a change in the middle
// of a kernel could split its loops inconsistently.
#pragma once
#include <cstdint>

namespace pycore {

// Threads a kernel may use right now (>= 1). Inside an OpenMP parallel region it
// returns 1 so that nested calls (a GEMM inside a per-image conv loop) run serially.
int num_threads();

// The configured count, whatever region we are in.
int get_num_threads();
// n >= 1. In a child process forked after kernels ran, only 1 is honoured (see threads.cpp).
void set_num_threads(int n);

// Threads worth using for `work` independent items when one thread should get at
// least `grain` of them: min(num_threads(), ceil(work / grain)), at least 1.
int threads_for(int64_t work, int64_t grain);

bool openmp_enabled();
int openmp_version();        // the _OPENMP macro (yyyymm), 0 without OpenMP
bool in_forked_child();      // true in a child forked after pycore was imported

}  // namespace pycore
