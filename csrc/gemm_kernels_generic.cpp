// Portable micro-kernels: GCC/Clang vector extensions of 16 bytes, which every
// x86-64 (SSE2) and ARM64 (NEON) CPU has (other compilers: portable::Vec, the same
// operations lane by lane). No FMA: a multiply and an add.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm.h"

namespace pycore {
namespace {

template <typename T>
struct GenericVec {
    using scalar = T;
    static constexpr int width = 16 / sizeof(T);
#if PYCORE_HAVE_VECTOR_EXTENSIONS
    typedef T reg __attribute__((vector_size(16)));
#else
    using reg = portable::Vec<T, width>;
#endif
    static reg zero() { return reg{}; }
    static reg broadcast(T x) { return reg{} + x; }
    static reg load(const T* p) { reg r; std::memcpy(&r, p, sizeof r); return r; }
    static reg loadu(const T* p) { return load(p); }
    static void storeu(T* p, reg r) { std::memcpy(p, &r, sizeof r); }
    static reg mul(reg a, reg b) { return a * b; }
    static reg add(reg a, reg b) { return a + b; }
    static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static T hsum(reg r) {
        T sum = r[0];
        for (int l = 1; l < width; ++l) sum += r[l];
        return sum;
    }
};

#include "gemm_kernels.h"

constexpr GemmKernel<float> kF32 = make_gemm_kernel<GenericVec<float>, 4, 2, 144, 384, 4032>("generic");
constexpr GemmKernel<double> kF64 = make_gemm_kernel<GenericVec<double>, 4, 2, 72, 256, 1024>("generic");

}  // namespace

const GemmKernel<float>* gemm_kernel_generic_f32() { return &kF32; }
const GemmKernel<double>* gemm_kernel_generic_f64() { return &kF64; }

}  // namespace pycore
