#include "threads.h"

#include <algorithm>
#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "portable.h"

namespace pycore {
namespace {

int initial_thread_count() {
#ifdef _OPENMP
    // omp_get_max_threads() honours OMP_NUM_THREADS and, without it, counts the
    // CPUs this process may run on (its affinity mask).
    return std::max(1, omp_get_max_threads());
#else
    return 1;
#endif
}

std::atomic<int> g_threads{initial_thread_count()};
std::atomic<bool> g_forked_child{false};

// GNU libgomp keeps a pool of worker threads that a fork() does not copy: a child
// that opens a parallel region with more than one thread waits for them forever
// (GCC bug 60035). So a forked child runs every kernel on one thread.
void after_fork_in_child() {
    g_forked_child.store(true);
    g_threads.store(1);
}

struct ForkGuard {
    ForkGuard() { portable::at_fork(nullptr, nullptr, after_fork_in_child); }  // no-op on Windows (no fork)
} g_fork_guard;

}  // namespace

int get_num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
    if (n < 1) n = 1;
    if (g_forked_child.load()) n = 1;
#ifndef _OPENMP
    n = 1;  // a build without OpenMP runs one thread: kernels that split work by thread id must not plan for more
#endif
    g_threads.store(n, std::memory_order_relaxed);
}

int num_threads() {
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
#endif
    return get_num_threads();
}

int threads_for(int64_t work, int64_t grain) {
    if (grain < 1) grain = 1;
    const int64_t wanted = (work + grain - 1) / grain;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), wanted)));
}

bool openmp_enabled() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

int openmp_version() {
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

bool in_forked_child() { return g_forked_child.load(); }

}  // namespace pycore
