// portable.h: every compiler- or OS-specific construct the kernels use, behind one name.
//
// pycore is built by GCC (Linux wheels), Apple clang (macOS, x86-64 and arm64) and MSVC
// (Windows). GCC and Clang share the GNU extensions (__builtin_*, __attribute__, vector
// types); MSVC has none of them, and Windows' C library has no std::aligned_alloc, no
// pthreads and no fork(). Each construct below has the GNU spelling first (the code the
// Linux and macOS builds have always compiled, unchanged), then MSVC's documented
// equivalent, then plain C++ where one exists. Code outside this header uses these names,
// never a builtin, so `grep -n __builtin_ csrc/*.cpp` finds nothing unguarded.
//
// PYCORE_FORCE_PORTABLE (setup.py: PYCORE_FORCE_PORTABLE=1) makes GCC or Clang take the
// non-GNU branches: the plain-C++ fallbacks, the CPU test through CPUID as on MSVC, no
// vector extensions, no `omp simd`. CI builds and tests that way, which is how the
// branches MSVC takes get compiled and run on Linux (the MSVC intrinsics themselves,
// __cpuidex, _BitScanReverse64, _aligned_malloc, are only compiled on Windows).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>

// ---- Which compiler and CPU -----------------------------------------------------------
// PYCORE_GNU: GCC or Clang (Apple clang, clang-cl and Intel's icx included), whose
// __builtin_* and __attribute__ this header uses. PYCORE_MSVC: Microsoft's cl.exe.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(PYCORE_FORCE_PORTABLE)
#define PYCORE_GNU 1
#else
#define PYCORE_GNU 0
#endif
#if defined(_MSC_VER) && !defined(__clang__) && !defined(PYCORE_FORCE_PORTABLE)
#define PYCORE_MSVC 1
#else
#define PYCORE_MSVC 0
#endif
// x86-64 (not ARM64EC, which defines _M_X64 but runs on an ARM CPU). Everything that uses
// SSE/AVX is inside `#if PYCORE_X86_64`: an arm64 build (Apple silicon, Linux aarch64)
// compiles the portable kernels only.
#if defined(__x86_64__) || (defined(_M_X64) && !defined(_M_ARM64EC))
#define PYCORE_X86_64 1
#else
#define PYCORE_X86_64 0
#endif

#if PYCORE_MSVC
#include <intrin.h>  // _BitScanReverse64, __cpuidex, _xgetbv, _mm_prefetch
#include <malloc.h>  // _aligned_malloc, _aligned_free
#endif
#if !defined(_WIN32)
#include <pthread.h>  // pthread_atfork, pthread_mutex_t (POSIX; Windows has no fork)
#endif
#if defined(_WIN32) || defined(PYCORE_FORCE_PORTABLE)
#include <mutex>
#endif
#if !PYCORE_GNU && !PYCORE_MSVC && PYCORE_X86_64 && defined(__GNUC__)
#include <cpuid.h>  // PYCORE_FORCE_PORTABLE under GCC/Clang: CPUID as MSVC reads it
#endif

// ---- Function attributes and loop hints -----------------------------------------------
// PYCORE_INLINE: always inlined, so that a hot loop's helpers (fastmath.h) are compiled
// into each instruction-set copy of the loop (simd.h) instead of called in the baseline
// one. PYCORE_LAMBDA_INLINE: the same for a lambda (after its parameter list); MSVC has no
// such attribute for lambdas before VS 2022 17.7, and without it the lambda is an ordinary
// inlining candidate. PYCORE_NOINLINE: never inlined (pool2d.pyx keeps its vectorised row
// loops as separate functions so the compiler optimises them on their own).
// PYCORE_RESTRICT: the pointer does not alias another (lets a loop vectorise).
// PYCORE_IVDEP: the iterations of the next loop are independent, for loops over slices of
// one buffer (an LSTM's four gate blocks at offsets of H) the compiler cannot prove disjoint.
#if PYCORE_GNU
#define PYCORE_INLINE inline __attribute__((always_inline))
#define PYCORE_LAMBDA_INLINE __attribute__((always_inline))
#define PYCORE_NOINLINE __attribute__((noinline))
#define PYCORE_RESTRICT __restrict__
#if defined(__clang__)
#define PYCORE_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#else
#define PYCORE_IVDEP _Pragma("GCC ivdep")
#endif
#elif PYCORE_MSVC
#define PYCORE_INLINE __forceinline
#define PYCORE_LAMBDA_INLINE
#define PYCORE_NOINLINE __declspec(noinline)
#define PYCORE_RESTRICT __restrict
#define PYCORE_IVDEP __pragma(loop(ivdep))
#else
#define PYCORE_INLINE inline
#define PYCORE_LAMBDA_INLINE
#define PYCORE_NOINLINE
#define PYCORE_RESTRICT
#define PYCORE_IVDEP
#endif

// PYCORE_HAVE_OMP_SIMD: `#pragma omp simd` may be written. MSVC's /openmp is OpenMP 2.0,
// which has no simd directive (only /openmp:experimental has it); a loop under
// `#if PYCORE_HAVE_OMP_SIMD` runs as written without it, just not forced into vectors.
#if PYCORE_MSVC || defined(PYCORE_FORCE_PORTABLE)
#define PYCORE_HAVE_OMP_SIMD 0
#else
#define PYCORE_HAVE_OMP_SIMD 1
#endif

// PYCORE_PREFETCH_WRITE(p): start loading the cache line of p, to be written soon. Only a
// hint: no-op where the compiler has no spelling for it. (GCC emits PREFETCHT0 for it on
// x86-64 unless -mprfchw allows PREFETCHW, so _mm_prefetch(T0) is the same instruction.)
#if PYCORE_GNU
#define PYCORE_PREFETCH_WRITE(p) __builtin_prefetch((p), 1)
#elif PYCORE_MSVC && PYCORE_X86_64
#define PYCORE_PREFETCH_WRITE(p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0)
#else
#define PYCORE_PREFETCH_WRITE(p) ((void)(p))
#endif

// ---- Vector types -----------------------------------------------------------------------
// PYCORE_HAVE_VECTOR_EXTENSIONS: `T __attribute__((vector_size(N)))` types with element-wise
// operators (GCC and Clang). Elsewhere code uses portable::Vec below, the same operations
// as a loop over an array, which a compiler may vectorise.
// PYCORE_HAVE_SHUFFLEVECTOR: __builtin_shufflevector on those types (Clang, GCC 12+); code
// without it takes its scalar loop.
#define PYCORE_HAVE_VECTOR_EXTENSIONS PYCORE_GNU
#if PYCORE_GNU && (defined(__clang__) || __GNUC__ >= 12)
#define PYCORE_HAVE_SHUFFLEVECTOR 1
#else
#define PYCORE_HAVE_SHUFFLEVECTOR 0
#endif

namespace pycore {
namespace portable {

// N lanes of T with the element-wise operators that pycore's code applies to GNU vector
// types: v + w, v * w, v + s, s * v, v += w, v[i], and Vec{} for zeros. Its alignment is
// T's, so a Vec may be read from any T* (as the vector types are declared
// aligned(sizeof(T)) where they are read unaligned).
template <typename T, int N>
struct Vec {
    T lane[N];

    T operator[](int i) const { return lane[i]; }
    T& operator[](int i) { return lane[i]; }
    Vec& operator+=(const Vec& w) {
        for (int i = 0; i < N; ++i) lane[i] += w.lane[i];
        return *this;
    }
    friend Vec operator+(Vec v, const Vec& w) { return v += w; }
    friend Vec operator*(Vec v, const Vec& w) {
        for (int i = 0; i < N; ++i) v.lane[i] *= w.lane[i];
        return v;
    }
    friend Vec operator+(Vec v, T s) {
        for (int i = 0; i < N; ++i) v.lane[i] += s;
        return v;
    }
    friend Vec operator*(T s, Vec v) {
        for (int i = 0; i < N; ++i) v.lane[i] = s * v.lane[i];
        return v;
    }
};

// ---- Checked integer arithmetic --------------------------------------------------------
// *out = a + b (a * b); true when the exact result does not fit in int64 (then *out is the
// wrapped value, as with the builtins). For sizes a caller passed, which must not wrap.
inline bool add_overflow(int64_t a, int64_t b, int64_t* out) {
#if PYCORE_GNU
    return __builtin_add_overflow(a, b, out);
#else
    *out = static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
    return b > 0 ? a > std::numeric_limits<int64_t>::max() - b : a < std::numeric_limits<int64_t>::min() - b;
#endif
}

inline bool mul_overflow(int64_t a, int64_t b, int64_t* out) {
#if PYCORE_GNU
    return __builtin_mul_overflow(a, b, out);
#else
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
    *out = static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    if (a == 0 || b == 0) return false;
    if (a > 0) return b > 0 ? a > kMax / b : b < kMin / a;  // a > 0: b < 0 overflows below kMin
    return b > 0 ? a < kMin / b : a < kMax / b;               // a < 0, b < 0: the product is positive
#endif
}

// ---- Bits --------------------------------------------------------------------------------
// The number of zero bits above the highest set bit of x; x must not be 0 (as the builtin).
inline int leading_zeros64(uint64_t x) {
#if PYCORE_GNU
    return __builtin_clzll(static_cast<unsigned long long>(x));
#elif PYCORE_MSVC
    unsigned long index;  // the highest set bit's position (x64 and ARM64 both have it)
    _BitScanReverse64(&index, x);
    return 63 - static_cast<int>(index);
#else
    int n = 0;
    for (int shift = 32; shift > 0; shift /= 2) {
        if ((x >> (64 - shift)) == 0) {
            n += shift;
            x <<= shift;
        }
    }
    return n;
#endif
}

// ---- Aligned memory -----------------------------------------------------------------------
// A block of `bytes` bytes aligned to `alignment` (a power of two; `bytes` a multiple of it,
// std::aligned_alloc's rule), or nullptr; give it back with aligned_free, never std::free:
// on Windows the pair is _aligned_malloc/_aligned_free, whose blocks free() cannot release.
// The plain-C++ branch (PYCORE_FORCE_PORTABLE) is not free()-compatible either, so a
// mismatched free fails loudly in that build on Linux as it would on Windows.
#if defined(_WIN32) && !defined(PYCORE_FORCE_PORTABLE)
inline void* aligned_allocate(size_t alignment, size_t bytes) { return _aligned_malloc(bytes, alignment); }
inline void aligned_free(void* p) { _aligned_free(p); }
#elif !defined(PYCORE_FORCE_PORTABLE)
inline void* aligned_allocate(size_t alignment, size_t bytes) { return std::aligned_alloc(alignment, bytes); }
inline void aligned_free(void* p) { std::free(p); }
#else
// malloc'd with room to align, the malloc'd pointer kept in the word before the block.
inline void* aligned_allocate(size_t alignment, size_t bytes) {
    const size_t extra = alignment + sizeof(void*);
    if (bytes > std::numeric_limits<size_t>::max() - extra) return nullptr;
    void* raw = std::malloc(bytes + extra);
    if (raw == nullptr) return nullptr;
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw) + sizeof(void*);
    void* block = reinterpret_cast<void*>((start + alignment - 1) & ~uintptr_t(alignment - 1));
    static_cast<void**>(block)[-1] = raw;
    return block;
}
inline void aligned_free(void* p) {
    if (p != nullptr) std::free(static_cast<void**>(p)[-1]);
}
#endif

// ---- A lock that a fork handler may take, and the fork handlers -----------------------------
// Mutex: lock()/unlock(), usable from at_fork's handlers (so std::lock_guard works too). On
// POSIX a pthread mutex, statically initialised (no constructor runs before first use);
// on Windows std::mutex (fork() does not exist there, so no handler ever takes it).
#if !defined(_WIN32) && !defined(PYCORE_FORCE_PORTABLE)
class Mutex {
public:
    void lock() { pthread_mutex_lock(&mutex_); }
    void unlock() { pthread_mutex_unlock(&mutex_); }

private:
    pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
};
#else
using Mutex = std::mutex;
#endif

// Registers fork handlers (pthread_atfork's three: before fork() in the parent, after it in
// the parent, after it in the child; nullptr for none). Windows has no fork(): nothing to do.
inline void at_fork(void (*prepare)(), void (*parent)(), void (*child)()) {
#if !defined(_WIN32)
    pthread_atfork(prepare, parent, child);
#else
    (void)prepare, (void)parent, (void)child;
#endif
}

// ---- CPU features (x86-64) ----------------------------------------------------------------
// What the CPU and the operating system support, for the run-time choice of kernels:
// GCC/Clang ask libgcc/compiler-rt (__builtin_cpu_supports); elsewhere CPUID and XGETBV are
// read directly (Intel SDM vol. 2A, CPUID; the OS must have enabled the AVX state in XCR0,
// and the AVX-512 state for AVX-512). Non-x86 CPUs: none of these.
struct X86Features {
    bool avx2_fma = false;  // AVX2 and FMA3: the avx2 GEMM kernels and hot-loop copies
    bool avx512 = false;    // AVX-512 F, BW, VL and DQ: what simd.h's AVX-512 copies are compiled for
};

// From the raw registers: leaf 1's ECX, leaf 7 (sub-leaf 0)'s EBX, and XCR0.
inline X86Features x86_features_from_cpuid(uint32_t leaf1_ecx, uint32_t leaf7_ebx, uint64_t xcr0) {
    X86Features f;
    const bool osxsave = (leaf1_ecx >> 27) & 1, avx = (leaf1_ecx >> 28) & 1, fma = (leaf1_ecx >> 12) & 1;
    const bool os_avx = osxsave && (xcr0 & 0x6) == 0x6;        // XMM and YMM state
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;    // opmask, ZMM_Hi256, Hi16_ZMM state
    const bool avx2 = (leaf7_ebx >> 5) & 1;
    const bool avx512 = ((leaf7_ebx >> 16) & 1) && ((leaf7_ebx >> 17) & 1) &&  // F, DQ
                        ((leaf7_ebx >> 30) & 1) && ((leaf7_ebx >> 31) & 1);    // BW, VL
    f.avx2_fma = os_avx && avx && avx2 && fma;
    f.avx512 = os_avx512 && f.avx2_fma && avx512;
    return f;
}

inline X86Features x86_features() {
    X86Features f;
#if PYCORE_X86_64 && PYCORE_GNU
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512 = f.avx2_fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#elif PYCORE_X86_64 && PYCORE_MSVC
    int r[4];  // EAX, EBX, ECX, EDX
    __cpuid(r, 0);
    if (r[0] < 7) return f;  // no leaf 7: no AVX2
    __cpuidex(r, 1, 0);
    const uint32_t leaf1_ecx = static_cast<uint32_t>(r[2]);
    __cpuidex(r, 7, 0);
    const uint32_t leaf7_ebx = static_cast<uint32_t>(r[1]);
    const uint64_t xcr0 = ((leaf1_ecx >> 27) & 1) ? _xgetbv(0) : 0;  // XGETBV faults without OSXSAVE
    f = x86_features_from_cpuid(leaf1_ecx, leaf7_ebx, xcr0);
#elif PYCORE_X86_64 && defined(__GNUC__)
    // PYCORE_FORCE_PORTABLE under GCC/Clang: the MSVC branch's reads, through <cpuid.h>.
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(1, 0, a, b, c, d);
    const uint32_t leaf1_ecx = c;
    __cpuid_count(7, 0, a, b, c, d);
    const uint32_t leaf7_ebx = b;
    uint64_t xcr0 = 0;
    if ((leaf1_ecx >> 27) & 1) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (uint64_t(hi) << 32) | lo;
    }
    f = x86_features_from_cpuid(leaf1_ecx, leaf7_ebx, xcr0);
#endif
    return f;
}

}  // namespace portable
}  // namespace pycore
