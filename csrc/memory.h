// memory.h: pycore's caching allocator, one process-wide pool of 64-byte-aligned blocks.
//
// Why: a LeNet-5 training step (batch 64) frees and re-allocates the same ~20 arrays of
// 0.1-1.2 MB every step. glibc hands the big ones back to the kernel (munmap, or a heap
// trim) and takes them again next step, so each step faulted ~630 fresh 4 KiB pages in
// (~0.4 us each plus the zeroing). A pool that keeps freed blocks and gives the same
// block to the next request of its size class makes the steady state fault-free.
//
// Who uses it:
//  - numpy arrays that pycore creates while it runs a layer's forward/backward, a loss or
//    an optimizer step: bind_memory.cpp installs the pool as numpy's data-memory handler
//    (PyDataMem_SetHandler) for the length of that call only. Each array remembers its
//    handler, so whenever it is freed (inside or outside pycore) its block comes back here.
//    A user's own numpy calls keep numpy's default handler.
//  - kernel scratch in C++: `Scratch<T>` (or allocate/release) instead of std::vector for
//    anything larger than a few KB that a kernel needs on every call.
//
// Size classes: 64-byte steps up to 1 KiB, then eight classes per power of two (1024,
// 1152, 1280, ..., 2048, ...), so a block is at most 12.5% larger than asked for (with 25%
// steps would waste up to twice as much). A free
// block serves only requests of its own class. Freed blocks are kept until the cache holds
// `cache_limit()` bytes (default 256 MiB, env PYCORE_MEMORY_CACHE_MB at import, or
// set_cache_limit); past that a freed block goes back to the system. Thread-safe (one
// mutex, held for a list push/pop only); after fork() the child's pool is consistent and
// unlocked (pthread_atfork takes the lock around the fork).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>

namespace pycore {
namespace memory {

constexpr size_t kAlignment = 64;  // a cache line, and one AVX-512 register

// A block of at least `bytes` bytes (uninitialised), 64-byte aligned. Throws
// std::bad_alloc when the system has no memory left.
void* allocate(size_t bytes);
// As allocate, with the first `bytes` bytes zeroed (a reused block is cleared).
void* allocate_zeroed(size_t bytes);
// Keeps the first min(old capacity, bytes) bytes; nullptr when out of memory (p then stays valid).
void* reallocate(void* p, size_t bytes);
// Gives a block from allocate* back to the pool; nullptr is ignored.
void release(void* p) noexcept;

// The usable size of a block: its size class, >= the bytes asked for.
size_t capacity(const void* p) noexcept;

struct Stats {
    uint64_t hits;          // requests served from the cache
    uint64_t misses;        // requests that went to the system
    uint64_t cached_bytes;  // bytes in free blocks held by the pool now
    uint64_t cache_limit;   // the most it keeps
    uint64_t live_blocks;   // blocks handed out and not yet released
};
Stats stats();
void set_cache_limit(size_t bytes);
size_t cache_limit();
// Returns every cached block to the system (live blocks are untouched).
void empty_cache();

// Per-call kernel scratch from the pool, released when it goes out of scope:
//     memory::Scratch<float> col(rows * cols);  float* p = col.data();
template <class T>
class Scratch {
public:
    explicit Scratch(size_t count) : data_(static_cast<T*>(allocate(count * sizeof(T)))), count_(count) {}
    ~Scratch() { release(data_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    T* data() { return data_; }
    const T* data() const { return data_; }
    size_t size() const { return count_; }
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }

private:
    T* data_;
    size_t count_;
};

}  // namespace memory
}  // namespace pycore
