// bind_util.h: the few checks every binding makes before it hands raw pointers to a
// kernel. The Python layer (pycore/_checks.py) has already validated arguments and
// produced messages for users; these checks are the last line, so that a call that
// slips past it raises a Python exception instead of reading out of bounds.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "gemm.h"  // Activation
#include "portable.h"

namespace pycore {
namespace bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// dtype equality as numpy defines it (PyArray_EquivTypes): an unpickled or user-built
// float32 descriptor is a different object from numpy's own, so identity is not enough;
// a byte-swapped float32 is not equivalent (the Python layer converts those).
template <class T>
bool has_dtype(const py::array& a) { return py::array_t<T>::check_(a); }
inline bool is_f32(const py::array& a) { return has_dtype<float>(a); }
inline bool is_f64(const py::array& a) { return has_dtype<double>(a); }

// Calls fn(T{}) with T = float or double, the dtype of `a`; TypeError otherwise.
template <class Fn>
auto dispatch_float(const py::array& a, const char* name, Fn&& fn) {
    if (is_f32(a)) return fn(float{});
    if (is_f64(a)) return fn(double{});
    throw py::type_error(std::string(name) + ": expected a float32 or float64 array, got dtype " +
                         dtype_str(a));
}

template <class T>
void check_array(const py::array& a, const char* name, int ndim = -1) {
    if (!has_dtype<T>(a))
        throw py::type_error(std::string(name) + ": expected dtype " +
                             py::str(py::dtype::of<T>()).cast<std::string>() + ", got " + dtype_str(a));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": expected a C-contiguous array");
    if (ndim >= 0 && a.ndim() != ndim)
        throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) +
                              " dimensions, got shape " + shape_str(a));
}

// A C-contiguous array of dtype T, read-only use.
template <class T>
const T* in_ptr(const py::array& a, const char* name, int ndim = -1) {
    check_array<T>(a, name, ndim);
    return static_cast<const T*>(a.data());
}

// A C-contiguous, writeable array of dtype T that the kernel writes into in place.
template <class T>
T* out_ptr(py::array& a, const char* name, int ndim = -1) {
    check_array<T>(a, name, ndim);
    if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
    return static_cast<T*>(a.mutable_data());
}

inline void check_shape(const py::array& a, const std::vector<int64_t>& shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) {
        std::string want = "(";
        for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
        throw py::value_error(std::string(name) + ": expected shape " + want + "), got " + shape_str(a));
    }
}

// The product of sizes a caller passed as numbers (not read from an array, whose sizes
// numpy has already multiplied safely): ValueError naming `what` if one is negative or the
// product would wrap int64 (2**33 * 2**31 wraps to 0, which an empty array would "match").
inline int64_t size_product(std::initializer_list<int64_t> sizes, const char* what) {
    int64_t product = 1;
    for (int64_t s : sizes)
        if (s < 0 || portable::mul_overflow(product, s, &product))
            throw py::value_error(std::string(what) + ": sizes must be >= 0 and their product fit in int64");
    return product;
}

template <class T>
py::array_t<T> new_array(const std::vector<int64_t>& shape) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array_t<T>(s);
}

// A fused layer's activation from the code pycore.functional.fused passes (gemm.h's
// Activation: 0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid).
inline Activation activation_of(int code) {
    if (code < 0 || code > static_cast<int>(Activation::kSigmoid))
        throw py::value_error("activation: expected a code 0..4 (none, relu, leaky_relu, tanh, sigmoid), got " +
                              std::to_string(code));
    return static_cast<Activation>(code);
}

}  // namespace bind

// Each op family registers its functions from its own bind_*.cpp.
void bind_core(pybind11::module_& m);
void bind_gemm(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_elementwise(pybind11::module_& m);
void bind_rnn(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_memory(pybind11::module_& m);

}  // namespace pycore
