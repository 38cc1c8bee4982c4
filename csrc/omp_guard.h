// omp_guard.h: no C++ exception may leave an OpenMP parallel region.
//
// An exception that escapes the structured block of `#pragma omp parallel` makes the
// runtime call std::terminate: the Python process aborts (SIGABRT) where a std::bad_alloc
// from a per-thread buffer should have been a MemoryError. Every region whose body can
// throw (it allocates, or calls code that does: gemm's packing, PackedMatrix, a vector)
// runs that body through RegionErrors:
//
//     RegionErrors errors;
//     #pragma omp parallel for num_threads(nt) schedule(static)
//     for (int64_t i = 0; i < n; ++i) errors.run([&] { body(i); });
//     errors.rethrow();     // after the region: the first exception, on the calling thread
//
// run() catches per iteration, so every thread still finishes its share of the loop and
// reaches the region's barrier (an exception that skipped a barrier would deadlock the
// others); later iterations after a failure still run (a failed allocation fails fast,
// and they write only their own outputs, which the caller discards with the exception).
// A body that cannot throw (inlined arithmetic) compiles to the same code as without the
// guard: the try/catch costs nothing on the path that does not throw. pybind11 then turns
// the rethrown exception into a Python one (std::bad_alloc -> MemoryError).
#pragma once
#include <exception>
#include <mutex>

namespace pycore {

class RegionErrors {
public:
    // body(), keeping its exception (the first one of the region) instead of letting it out.
    template <class Body>
    void run(const Body& body) noexcept {
        try {
            body();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_) first_ = std::current_exception();
        }
    }

    // Call after the region, outside it: rethrows the first exception caught, if any.
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::mutex mutex_;
    std::exception_ptr first_;
};

}  // namespace pycore
