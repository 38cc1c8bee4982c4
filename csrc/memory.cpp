// memory.cpp: the size-class caching pool (see memory.h for why and how it is used).
//
// Every block starts with a 64-byte header (so the payload stays 64-byte aligned) that
// records its size class; free blocks of one class form a singly linked list through the
// header, so the pool itself never allocates.
#include "memory.h"

#include <cstdlib>
#include <cstring>

#include "portable.h"

namespace pycore {
namespace memory {
namespace {

constexpr uint32_t kMagic = 0x70636d6bu;  // "pcmk": catches a pointer that is not ours
constexpr size_t kSmallStep = 64;         // classes 64, 128, ..., 1024
constexpr size_t kSmallLimit = 1024;
constexpr int kSmallClasses = kSmallLimit / kSmallStep;        // 16
constexpr int kClassesPerOctave = 8;                           // 12.5% steps above 1 KiB
constexpr int kClasses = kSmallClasses + (63 - 10) * kClassesPerOctave + kClassesPerOctave;
constexpr size_t kLargest = size_t(1) << 62;                   // larger requests are refused

struct alignas(kAlignment) Header {
    Header* next;      // next free block of the same class (only while cached)
    size_t capacity;   // usable bytes after the header
    uint32_t index;    // size class
    uint32_t magic;
};
static_assert(sizeof(Header) == kAlignment, "the header keeps the payload 64-byte aligned");

// The class of a request: its index and the capacity every block of that class has.
int size_class(size_t bytes, size_t* cap) {
    if (bytes <= kSmallLimit) {
        const size_t steps = bytes == 0 ? 1 : (bytes + kSmallStep - 1) / kSmallStep;
        *cap = steps * kSmallStep;
        return static_cast<int>(steps) - 1;
    }
    // 2^k < bytes <= 2^(k+1), k >= 10; the classes are 2^k + j * 2^(k-3), j = 1..8.
    const int k = 63 - portable::leading_zeros64(bytes - 1);
    const size_t base = size_t(1) << k, step = base / kClassesPerOctave;
    const size_t j = (bytes - base + step - 1) / step;
    *cap = base + j * step;
    return kSmallClasses + (k - 10) * kClassesPerOctave + static_cast<int>(j) - 1;
}

size_t initial_limit() {
    const char* env = std::getenv("PYCORE_MEMORY_CACHE_MB");
    if (env != nullptr && *env != '\0') {
        char* end = nullptr;
        const unsigned long long mb = std::strtoull(env, &end, 10);
        if (end != env && *end == '\0') return static_cast<size_t>(mb) << 20;
    }
    return size_t(256) << 20;
}

struct Pool {
    portable::Mutex lock;
    Header* free_list[kClasses] = {};
    size_t cached_bytes = 0;
    size_t limit = initial_limit();
    uint64_t hits = 0, misses = 0, live = 0;
};

// Never destroyed: numpy arrays that outlive the module (until interpreter exit) still
// release into it.
Pool& pool() {
    static Pool* p = new Pool();
    return *p;
}

struct Locked {
    explicit Locked(Pool& p) : pool(p) { pool.lock.lock(); }
    ~Locked() { pool.lock.unlock(); }
    Pool& pool;
};

// The fork happens with the lock held by the forking thread, so the child's copy of the
// free lists is never half-updated; both sides then unlock.
void before_fork() { pool().lock.lock(); }
void after_fork() { pool().lock.unlock(); }
struct ForkGuard {
    ForkGuard() { portable::at_fork(before_fork, after_fork, after_fork); }
} g_fork_guard;

Header* header_of(const void* p) {
    Header* h = reinterpret_cast<Header*>(static_cast<char*>(const_cast<void*>(p)) - kAlignment);
    if (h->magic != kMagic) std::abort();  // not a pool block: freeing it would corrupt the heap
    return h;
}

void* take(size_t bytes) {
    if (bytes > kLargest) return nullptr;
    size_t cap = 0;
    const int index = size_class(bytes, &cap);
    Pool& p = pool();
    {
        Locked guard(p);
        Header* h = p.free_list[index];
        if (h != nullptr) {
            p.free_list[index] = h->next;
            p.cached_bytes -= h->capacity;
            ++p.hits;
            ++p.live;
            return h + 1;
        }
        ++p.misses;
        ++p.live;
    }
    Header* h = static_cast<Header*>(portable::aligned_allocate(kAlignment, sizeof(Header) + cap));
    if (h == nullptr) {
        Locked guard(p);
        --p.live;
        return nullptr;
    }
    h->next = nullptr;
    h->capacity = cap;
    h->index = static_cast<uint32_t>(index);
    h->magic = kMagic;
    return h + 1;
}

}  // namespace

void* allocate(size_t bytes) {
    void* p = take(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

void* allocate_zeroed(size_t bytes) {
    void* p = allocate(bytes);
    std::memset(p, 0, bytes);
    return p;
}

void* reallocate(void* p, size_t bytes) {
    if (p == nullptr) return take(bytes);
    const size_t old_cap = header_of(p)->capacity;
    if (bytes <= old_cap) return p;
    void* q = take(bytes);
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, old_cap);
    release(p);
    return q;
}

void release(void* ptr) noexcept {
    if (ptr == nullptr) return;
    Header* h = header_of(ptr);
    Pool& p = pool();
    {
        Locked guard(p);
        --p.live;
        if (p.cached_bytes + h->capacity <= p.limit) {
            h->next = p.free_list[h->index];
            p.free_list[h->index] = h;
            p.cached_bytes += h->capacity;
            return;
        }
    }
    portable::aligned_free(h);
}

size_t capacity(const void* p) noexcept { return header_of(p)->capacity; }

Stats stats() {
    Pool& p = pool();
    Locked guard(p);
    return Stats{p.hits, p.misses, p.cached_bytes, p.limit, p.live};
}

size_t cache_limit() {
    Pool& p = pool();
    Locked guard(p);
    return p.limit;
}

void set_cache_limit(size_t bytes) {
    {
        Pool& p = pool();
        Locked guard(p);
        p.limit = bytes;
    }
    if (stats().cached_bytes > bytes) empty_cache();
}

void empty_cache() {
    Header* all = nullptr;
    {
        Pool& p = pool();
        Locked guard(p);
        for (Header*& head : p.free_list) {
            while (head != nullptr) {
                Header* h = head;
                head = h->next;
                h->next = all;
                all = h;
            }
        }
        p.cached_bytes = 0;
    }
    while (all != nullptr) {  // outside the lock: free() of big blocks is an munmap
        Header* h = all;
        all = h->next;
        portable::aligned_free(h);
    }
}

}  // namespace memory
}  // namespace pycore
