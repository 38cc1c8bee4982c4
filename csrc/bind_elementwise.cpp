// bind_elementwise.cpp: activations, softmax, PReLU, dropout and batch norm on numpy arrays.
//
// Every function writes into output arrays the Python layer allocated (C-contiguous,
// same dtype and size as the input), so nothing here allocates or chooses a dtype.
#include "batchnorm.h"
#include "bind_util.h"
#include "elementwise.h"

namespace pycore {
namespace {

namespace py = pybind11;

// All arrays of one call share x's dtype and element count.
template <class T>
void check_size(const py::array& a, const py::array& x, const char* name) {
    bind::check_array<T>(a, name);
    if (a.size() != x.size())
        throw py::value_error(std::string(name) + ": expected " + std::to_string(x.size()) +
                              " elements, got shape " + bind::shape_str(a));
}

// y = f(x): kernel(y, x, n)
template <class Kernel>
void unary(py::array y, const py::array& x, Kernel kernel) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_size<T>(y, x, "y");
        const T* xp = bind::in_ptr<T>(x, "x");
        T* yp = bind::out_ptr<T>(y, "y");
        const int64_t n = x.size();
        py::gil_scoped_release release;
        kernel(yp, xp, n);
    });
}

// dx = f(dy, saved): kernel(dx, dy, saved, n)
template <class Kernel>
void unary_backward(py::array dx, const py::array& dy, const py::array& saved, Kernel kernel) {
    bind::dispatch_float(dy, "dy", [&](auto tag) {
        using T = decltype(tag);
        check_size<T>(dx, dy, "dx");
        check_size<T>(saved, dy, "saved");
        const T* gp = bind::in_ptr<T>(dy, "dy");
        const T* sp = bind::in_ptr<T>(saved, "saved");
        T* dp = bind::out_ptr<T>(dx, "dx");
        const int64_t n = dy.size();
        py::gil_scoped_release release;
        kernel(dp, gp, sp, n);
    });
}

// Generic lambdas, so that one registration serves float and double.
#define PYCORE_UNARY(fn) [](py::array y, const py::array& x) { \
    unary(y, x, [](auto* yp, const auto* xp, int64_t n) { fn(yp, xp, n); }); }
#define PYCORE_UNARY_BACKWARD(fn) [](py::array dx, const py::array& dy, const py::array& saved) { \
    unary_backward(dx, dy, saved, [](auto* dp, const auto* gp, const auto* sp, int64_t n) { fn(dp, gp, sp, n); }); }

void softmax_py(py::array y, const py::array& x, int64_t outer, int64_t dim, int64_t inner, bool log_output) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        if (bind::size_product({outer, dim, inner}, "softmax") != static_cast<int64_t>(x.size()))
            throw py::value_error("softmax: outer * dim * inner does not match the array size");
        check_size<T>(y, x, "y");
        const T* xp = bind::in_ptr<T>(x, "x");
        T* yp = bind::out_ptr<T>(y, "y");
        py::gil_scoped_release release;
        softmax_forward<T>(yp, xp, outer, dim, inner, log_output);
    });
}

void softmax_backward_py(py::array dx, const py::array& dy, const py::array& y, int64_t outer, int64_t dim,
                         int64_t inner, bool log_output) {
    bind::dispatch_float(dy, "dy", [&](auto tag) {
        using T = decltype(tag);
        if (bind::size_product({outer, dim, inner}, "softmax_backward") != static_cast<int64_t>(dy.size()))
            throw py::value_error("softmax_backward: outer * dim * inner does not match the array size");
        check_size<T>(dx, dy, "dx");
        check_size<T>(y, dy, "y");
        const T* gp = bind::in_ptr<T>(dy, "dy");
        const T* yp = bind::in_ptr<T>(y, "y");
        T* dp = bind::out_ptr<T>(dx, "dx");
        py::gil_scoped_release release;
        softmax_backward<T>(dp, gp, yp, outer, dim, inner, log_output);
    });
}

void dropout_py(py::array y, py::array mask, const py::array& x, const py::array& u, double p) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_size<T>(y, x, "y");
        check_size<T>(mask, x, "mask");
        check_size<T>(u, x, "u");
        const T* xp = bind::in_ptr<T>(x, "x");
        const T* up = bind::in_ptr<T>(u, "u");
        T* yp = bind::out_ptr<T>(y, "y");
        T* mp = bind::out_ptr<T>(mask, "mask");
        const int64_t n = x.size();
        py::gil_scoped_release release;
        dropout_forward<T>(yp, mp, xp, up, p, n);
    });
}

// ---------------------------------------------------------------------------------------
// Per-channel arrays (batch norm, prelu): (C,) or None.

py::array as_array(const py::object& a, const char* name) {
    if (!py::isinstance<py::array>(a)) throw py::type_error(std::string(name) + ": expected a numpy array or None");
    return py::reinterpret_borrow<py::array>(a);
}

// A (C,) array the kernel reads, or nullptr for None.
template <class T>
const T* optional_channel_in(const py::object& a, int64_t C, const char* name) {
    if (a.is_none()) return nullptr;
    py::array arr = as_array(a, name);
    const T* p = bind::in_ptr<T>(arr, name, 1);
    bind::check_shape(arr, {C}, name);
    return p;
}

// A (C,) array the kernel writes in place, or nullptr for None.
template <class T>
T* optional_channel_out(const py::object& a, int64_t C, const char* name) {
    if (a.is_none()) return nullptr;
    py::array arr = as_array(a, name);
    T* p = bind::out_ptr<T>(arr, name, 1);
    bind::check_shape(arr, {C}, name);
    return p;
}

// Sizes come from Python as (outer, channels, inner) = (N, C, H*W...), as for softmax and
// channel_sum (DEVELOPERS.md, "one way to pass shapes"); checked against the array here.
void check_dims(const py::array& x, int64_t N, int64_t C, int64_t HW, const char* what) {
    if (bind::size_product({N, C, HW}, what) != static_cast<int64_t>(x.size()))
        throw py::value_error(std::string(what) + ": outer * channels * inner does not match the array size");
}

// ---------------------------------------------------------------------------------------
// prelu: x viewed as (outer, channels, inner), weight (channels,).

void prelu_py(py::array y, const py::array& x, const py::array& weight, int64_t outer, int64_t channels,
              int64_t inner) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_size<T>(y, x, "y");
        const T* xp = bind::in_ptr<T>(x, "x");
        const T* wp = bind::in_ptr<T>(weight, "weight", 1);
        check_dims(x, outer, channels, inner, "prelu");
        bind::check_shape(weight, {channels}, "weight");
        T* yp = bind::out_ptr<T>(y, "y");
        py::gil_scoped_release release;
        prelu_forward<T>(yp, xp, wp, outer, channels, inner);
    });
}

void prelu_backward_py(const py::object& dx, const py::object& grad_weight, const py::array& dy, const py::array& x,
                       const py::array& weight, int64_t outer, int64_t channels, int64_t inner) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_size<T>(dy, x, "dy");
        const T* gp = bind::in_ptr<T>(dy, "dy");
        const T* xp = bind::in_ptr<T>(x, "x");
        const T* wp = bind::in_ptr<T>(weight, "weight", 1);
        check_dims(x, outer, channels, inner, "prelu_backward");
        bind::check_shape(weight, {channels}, "weight");
        T* dxp = nullptr;
        if (!dx.is_none()) {
            py::array dxa = as_array(dx, "dx");
            check_size<T>(dxa, x, "dx");
            dxp = bind::out_ptr<T>(dxa, "dx");
        }
        T* gwp = optional_channel_out<T>(grad_weight, channels, "grad_weight");
        py::gil_scoped_release release;
        prelu_backward<T>(dxp, gwp, gp, xp, wp, outer, channels, inner);
    });
}

// ---------------------------------------------------------------------------------------
// batch norm: x is (N, C, ...) C-contiguous.

void batch_norm_py(py::array y, py::array mean, py::array invstd, const py::array& x, const py::object& weight,
                   const py::object& bias, const py::object& running_mean, const py::object& running_var,
                   int64_t N, int64_t C, int64_t HW, bool training, double momentum, double eps) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_dims(x, N, C, HW, "batch_norm");
        check_size<T>(y, x, "y");
        const T* xp = bind::in_ptr<T>(x, "x");
        T* yp = bind::out_ptr<T>(y, "y");
        T* mp = bind::out_ptr<T>(mean, "mean", 1);
        T* ip = bind::out_ptr<T>(invstd, "invstd", 1);
        bind::check_shape(mean, {C}, "mean");
        bind::check_shape(invstd, {C}, "invstd");
        const T* wp = optional_channel_in<T>(weight, C, "weight");
        const T* bp = optional_channel_in<T>(bias, C, "bias");
        T* rm = optional_channel_out<T>(running_mean, C, "running_mean");
        T* rv = optional_channel_out<T>(running_var, C, "running_var");
        if (!training && (!rm || !rv)) throw py::value_error("batch_norm: eval mode needs running_mean and running_var");
        py::gil_scoped_release release;
        batch_norm_forward<T>(yp, mp, ip, xp, wp, bp, rm, rv, N, C, HW, training, momentum, eps);
    });
}

void batch_norm_backward_py(const py::object& dx, const py::object& grad_weight, const py::object& grad_bias,
                            const py::array& dy, const py::array& x, const py::array& mean, const py::array& invstd,
                            const py::object& weight, int64_t N, int64_t C, int64_t HW, bool training) {
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        check_dims(x, N, C, HW, "batch_norm_backward");
        check_size<T>(dy, x, "dy");
        T* dxp = nullptr;
        if (!dx.is_none()) {
            py::array dxa = as_array(dx, "dx");
            check_size<T>(dxa, x, "dx");
            dxp = bind::out_ptr<T>(dxa, "dx");
        }
        const T* xp = bind::in_ptr<T>(x, "x");
        const T* gp = bind::in_ptr<T>(dy, "dy");
        const T* mp = bind::in_ptr<T>(mean, "mean", 1);
        const T* ip = bind::in_ptr<T>(invstd, "invstd", 1);
        bind::check_shape(mean, {C}, "mean");
        bind::check_shape(invstd, {C}, "invstd");
        const T* wp = optional_channel_in<T>(weight, C, "weight");
        T* gw = optional_channel_out<T>(grad_weight, C, "grad_weight");
        T* gb = optional_channel_out<T>(grad_bias, C, "grad_bias");
        py::gil_scoped_release release;
        batch_norm_backward<T>(dxp, gw, gb, gp, xp, mp, ip, wp, N, C, HW, training);
    });
}

}  // namespace

void bind_elementwise(pybind11::module_& m) {
    m.def("relu_forward", PYCORE_UNARY(relu_forward), py::arg("y"), py::arg("x"), "y = max(x, 0)");
    m.def("relu_backward", PYCORE_UNARY_BACKWARD(relu_backward), py::arg("dx"), py::arg("dy"), py::arg("y"),
          "dx = dy * (y > 0)");
    m.def("sigmoid_forward", PYCORE_UNARY(sigmoid_forward), py::arg("y"), py::arg("x"), "y = 1 / (1 + exp(-x))");
    m.def("sigmoid_backward", PYCORE_UNARY_BACKWARD(sigmoid_backward), py::arg("dx"), py::arg("dy"), py::arg("y"),
          "dx = dy * y * (1 - y)");
    m.def("tanh_forward", PYCORE_UNARY(tanh_forward), py::arg("y"), py::arg("x"), "y = tanh(x)");
    m.def("tanh_backward", PYCORE_UNARY_BACKWARD(tanh_backward), py::arg("dx"), py::arg("dy"), py::arg("y"),
          "dx = dy * (1 - y^2)");
    m.def("dropout_backward", PYCORE_UNARY_BACKWARD(dropout_backward), py::arg("dx"), py::arg("dy"),
          py::arg("mask"), "dx = dy * mask");
    m.def(
        "leaky_relu_forward",
        [](py::array y, const py::array& x, double slope) {
            unary(y, x, [slope](auto* yp, const auto* xp, int64_t n) {
                using T = std::remove_const_t<std::remove_pointer_t<decltype(xp)>>;
                leaky_relu_forward<T>(yp, xp, T(slope), n);
            });
        },
        py::arg("y"), py::arg("x"), py::arg("negative_slope"), "y = x > 0 ? x : negative_slope * x");
    m.def(
        "leaky_relu_backward",
        [](py::array dx, const py::array& dy, const py::array& x, double slope) {
            unary_backward(dx, dy, x, [slope](auto* dp, const auto* gp, const auto* xp, int64_t n) {
                using T = std::remove_const_t<std::remove_pointer_t<decltype(xp)>>;
                leaky_relu_backward<T>(dp, gp, xp, T(slope), n);
            });
        },
        py::arg("dx"), py::arg("dy"), py::arg("x"), py::arg("negative_slope"),
        "dx = dy * (x > 0 ? 1 : negative_slope)");
    m.def("softmax_forward", &softmax_py, py::arg("y"), py::arg("x"), py::arg("outer"), py::arg("dim"),
          py::arg("inner"), py::arg("log_output"),
          "softmax (or log_softmax) along the middle axis of x viewed as (outer, dim, inner)");
    m.def("softmax_backward", &softmax_backward_py, py::arg("dx"), py::arg("dy"), py::arg("y"), py::arg("outer"),
          py::arg("dim"), py::arg("inner"), py::arg("log_output"),
          "gradient of softmax (or log_softmax) from its output y");
    m.def("dropout_forward", &dropout_py, py::arg("y"), py::arg("mask"), py::arg("x"), py::arg("u"), py::arg("p"),
          "mask = (u >= p) / (1 - p); y = x * mask");
    m.def("prelu_forward", &prelu_py, py::arg("y"), py::arg("x"), py::arg("weight"), py::arg("outer"),
          py::arg("channels"), py::arg("inner"),
          "y = x > 0 ? x : weight[c] * x, x viewed as (outer, channels, inner) (one slope: channels = 1)");
    m.def("prelu_backward", &prelu_backward_py, py::arg("dx"), py::arg("grad_weight"), py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("outer"), py::arg("channels"), py::arg("inner"),
          "dx = dy * (x > 0 ? 1 : weight[c]) (dx None: skipped); adds sum of (x > 0 ? 0 : dy * x) per channel into "
          "grad_weight (None: skipped)");
    m.def("batch_norm_forward", &batch_norm_py, py::arg("y"), py::arg("mean"), py::arg("invstd"), py::arg("x"),
          py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("outer"),
          py::arg("channels"), py::arg("inner"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
          "per-channel batch normalisation of x viewed as (outer, channels, inner) = (N, C, H*W); updates the "
          "running statistics in training");
    m.def("batch_norm_backward", &batch_norm_backward_py, py::arg("dx"), py::arg("grad_weight"),
          py::arg("grad_bias"), py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("invstd"), py::arg("weight"),
          py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("training"),
          "gradients of batch_norm (x viewed as (outer, channels, inner)); accumulates into grad_weight and "
          "grad_bias");
}

}  // namespace pycore
