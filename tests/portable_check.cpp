// portable_check.cpp: csrc/portable.h's fallbacks against the GCC/Clang builtins they stand in
// for. Built by tests/test_portable.py with -DPYCORE_FORCE_PORTABLE, so portable::* are the
// branches a non-GNU compiler takes (plain C++, CPUID read directly) while __builtin_* are
// still there to compare with. Prints one line per mismatch; exit status 1 if any.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <vector>

#include "portable.h"

#if !defined(PYCORE_FORCE_PORTABLE)
#error "build with -DPYCORE_FORCE_PORTABLE: this checks the fallbacks"
#endif

using pycore::portable::Vec;
namespace portable = pycore::portable;

static int failures = 0;
#define CHECK(cond, ...)                               \
    do {                                               \
        if (!(cond)) {                                 \
            ++failures;                                \
            std::printf("FAIL %s: ", #cond);           \
            std::printf(__VA_ARGS__);                  \
            std::printf("\n");                         \
        }                                              \
    } while (0)

static std::vector<int64_t> edge_values() {
    const int64_t max = std::numeric_limits<int64_t>::max(), min = std::numeric_limits<int64_t>::min();
    std::vector<int64_t> v = {0, 1, -1, 2, -2, 3, -3, max, min, max - 1, min + 1, max / 2, min / 2,
                              max / 2 + 1, min / 2 - 1, int64_t(1) << 31, -(int64_t(1) << 31),
                              int64_t(3037000499), int64_t(3037000500), -int64_t(3037000499), -int64_t(3037000500),
                              int64_t(1) << 32, int64_t(1) << 62, -(int64_t(1) << 62), int64_t(1) << 33};
    std::mt19937_64 rng(15);
    for (int i = 0; i < 200; ++i) {
        const int64_t r = static_cast<int64_t>(rng());
        v.push_back(r);
        v.push_back(r >> (rng() % 63));  // every magnitude
    }
    return v;
}

static void check_overflow() {
    const std::vector<int64_t> values = edge_values();
    for (int64_t a : values) {
        for (int64_t b : values) {
            int64_t want, got;
            bool want_over = __builtin_add_overflow(a, b, &want), got_over = portable::add_overflow(a, b, &got);
            CHECK(want_over == got_over && want == got, "add %lld %lld", (long long)a, (long long)b);
            want_over = __builtin_mul_overflow(a, b, &want), got_over = portable::mul_overflow(a, b, &got);
            CHECK(want_over == got_over && want == got, "mul %lld %lld", (long long)a, (long long)b);
        }
    }
}

static void check_leading_zeros() {
    for (int bit = 0; bit < 64; ++bit) {
        const uint64_t x = uint64_t(1) << bit;
        CHECK(portable::leading_zeros64(x) == __builtin_clzll(x), "bit %d", bit);
        CHECK(portable::leading_zeros64(x | 1) == __builtin_clzll(x | 1), "bit %d | 1", bit);
        CHECK(portable::leading_zeros64(x * 2 - 1) == __builtin_clzll(x * 2 - 1), "ones to bit %d", bit);
    }
    std::mt19937_64 rng(16);
    for (int i = 0; i < 10000; ++i) {
        const uint64_t x = rng() >> (rng() % 64) | 1;
        CHECK(portable::leading_zeros64(x) == __builtin_clzll(x), "%llx", (unsigned long long)x);
    }
}

static void check_aligned() {
    std::vector<void*> blocks;
    for (size_t alignment : {size_t(16), size_t(64), size_t(4096)}) {
        for (size_t bytes = alignment; bytes <= (size_t(1) << 20); bytes *= 3) {
            const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
            void* p = portable::aligned_allocate(alignment, rounded);
            CHECK(p != nullptr, "%zu bytes", rounded);
            if (!p) continue;
            CHECK(reinterpret_cast<uintptr_t>(p) % alignment == 0, "alignment %zu", alignment);
            std::memset(p, 0xab, rounded);  // every byte is ours (ASan would see otherwise)
            blocks.push_back(p);
        }
    }
    for (void* p : blocks) portable::aligned_free(p);
    portable::aligned_free(nullptr);
    CHECK(portable::aligned_allocate(64, std::numeric_limits<size_t>::max() - 63) == nullptr, "huge request");
}

template <typename T, int N>
static void check_vec() {
    typedef T gnu __attribute__((vector_size(N * sizeof(T))));
    std::mt19937 rng(17);
    std::uniform_real_distribution<double> u(-3, 3);
    for (int trial = 0; trial < 100; ++trial) {
        T a[N], b[N], c[N];
        for (int i = 0; i < N; ++i) a[i] = T(u(rng)), b[i] = T(u(rng)), c[i] = T(u(rng));
        const T s = T(u(rng));
        gnu ga, gb, gc;
        Vec<T, N> va, vb, vc;
        std::memcpy(&ga, a, sizeof a), std::memcpy(&gb, b, sizeof b), std::memcpy(&gc, c, sizeof c);
        std::memcpy(&va, a, sizeof a), std::memcpy(&vb, b, sizeof b), std::memcpy(&vc, c, sizeof c);
        // the expressions gemm_kernels_generic.cpp and conv.cpp's direct kernels write
        gnu g_results[4] = {ga * gb + gc, gnu{} + s, ga + gb, gc};
        g_results[3] += s * ga;
        Vec<T, N> v_results[4] = {va * vb + vc, Vec<T, N>{} + s, va + vb, vc};
        v_results[3] += s * va;
        static_assert(sizeof(Vec<T, N>) == sizeof(gnu), "same size as the vector type");
        CHECK(std::memcmp(g_results, v_results, sizeof g_results) == 0, "Vec<%zu bytes, %d>", sizeof(T), N);
        const Vec<T, N> zeros{};
        CHECK(va[N - 1] == ga[N - 1] && zeros[0] == T(0), "lanes");
    }
}

static void check_cpu_features() {
#if defined(__x86_64__)
    const portable::X86Features cpuid = portable::x86_features();  // CPUID + XGETBV, as on MSVC
    __builtin_cpu_init();
    const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2_fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    CHECK(cpuid.avx2_fma == avx2_fma, "avx2+fma: cpuid says %d, libgcc %d", cpuid.avx2_fma, avx2_fma);
    CHECK(cpuid.avx512 == avx512, "avx512: cpuid says %d, libgcc %d", cpuid.avx512, avx512);
    std::printf("cpu: avx2+fma %d, avx512 %d\n", avx2_fma, avx512);
#endif
    // The decoding alone: each missing bit turns its feature off.
    const uint32_t ecx = (1u << 12) | (1u << 27) | (1u << 28), ebx = (1u << 5) | (1u << 16) | (1u << 17) |
                                                                    (1u << 30) | (1u << 31);
    const uint64_t xcr0 = 0xe7;
    CHECK(portable::x86_features_from_cpuid(ecx, ebx, xcr0).avx512, "all bits set");
    CHECK(!portable::x86_features_from_cpuid(ecx, ebx, 0x7).avx512, "OS without AVX-512 state");
    CHECK(portable::x86_features_from_cpuid(ecx, ebx, 0x7).avx2_fma, "AVX state only");
    CHECK(!portable::x86_features_from_cpuid(ecx, ebx, 0x3).avx2_fma, "OS without AVX state");
    CHECK(!portable::x86_features_from_cpuid(ecx & ~(1u << 12), ebx, xcr0).avx2_fma, "no FMA");
    CHECK(!portable::x86_features_from_cpuid(ecx & ~(1u << 27), ebx, xcr0).avx2_fma, "no OSXSAVE");
    CHECK(!portable::x86_features_from_cpuid(ecx, ebx & ~(1u << 5), xcr0).avx2_fma, "no AVX2");
    for (int bit : {16, 17, 30, 31})
        CHECK(!portable::x86_features_from_cpuid(ecx, ebx & ~(1u << bit), xcr0).avx512, "no leaf-7 bit %d", bit);
}

static void check_mutex() {
    portable::Mutex m;
    { std::lock_guard<portable::Mutex> hold(m); }
    m.lock();
    m.unlock();
}

int main() {
    check_overflow();
    check_leading_zeros();
    check_aligned();
    check_vec<float, 4>();
    check_vec<double, 2>();
    check_vec<float, 8>();
    check_vec<double, 8>();
    check_cpu_features();
    check_mutex();
    std::printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
