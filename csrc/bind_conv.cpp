// bind_conv.cpp: conv2d_forward / conv2d_backward on numpy arrays (pycore.functional.conv
// validates arguments for users; the checks here only keep a stray call from crashing).
#include <string>

#include "bind_util.h"
#include "conv.h"

namespace pycore {
namespace {

namespace py = pybind11;

// The convolution's sizes, read from inp (N, C, H, W) and weight (OC, C/groups, KH, KW)
// and checked for consistency with the hyper-parameters.
Conv2dGeometry geometry(const py::array& inp, const py::array& weight, int64_t stride_h, int64_t stride_w,
                        int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                        int64_t dilation_h, int64_t dilation_w, int64_t groups) {
    if (inp.ndim() != 4) throw py::value_error("input: expected a 4-D array (N, C, H, W), got shape " + bind::shape_str(inp));
    if (weight.ndim() != 4)
        throw py::value_error("weight: expected a 4-D array (OC, C/groups, KH, KW), got shape " + bind::shape_str(weight));
    if (stride_h < 1 || stride_w < 1 || dilation_h < 1 || dilation_w < 1 || groups < 1)
        throw py::value_error("conv2d: stride, dilation and groups must be >= 1");
    if (pad_top < 0 || pad_bottom < 0 || pad_left < 0 || pad_right < 0)
        throw py::value_error("conv2d: padding must be >= 0");
    Conv2dGeometry g{};
    g.N = inp.shape(0), g.C = inp.shape(1), g.H = inp.shape(2), g.W = inp.shape(3);
    g.OC = weight.shape(0), g.KH = weight.shape(2), g.KW = weight.shape(3);
    g.stride_h = stride_h, g.stride_w = stride_w;
    g.pad_top = pad_top, g.pad_bottom = pad_bottom, g.pad_left = pad_left, g.pad_right = pad_right;
    g.dilation_h = dilation_h, g.dilation_w = dilation_w, g.groups = groups;
    if (g.C % groups || g.OC % groups || weight.shape(1) * groups != g.C)
        throw py::value_error("conv2d: input shape " + bind::shape_str(inp) + " and weight shape " +
                              bind::shape_str(weight) + " do not fit groups=" + std::to_string(groups));
    if (g.KH < 1 || g.KW < 1 || g.OC < 1) throw py::value_error("weight: empty kernel, shape " + bind::shape_str(weight));
    // The kernel forms H + pad_top + pad_bottom and dilation*(KH - 1) (and along W) in int64:
    // a direct call must not make them wrap (the Python layer bounds them with a message).
    int64_t padded_h, padded_w, extent_h, extent_w;
    if (portable::add_overflow(g.H, pad_top, &padded_h) || portable::add_overflow(padded_h, pad_bottom, &padded_h) ||
        portable::add_overflow(g.W, pad_left, &padded_w) || portable::add_overflow(padded_w, pad_right, &padded_w) ||
        portable::mul_overflow(dilation_h, g.KH - 1, &extent_h) || portable::mul_overflow(dilation_w, g.KW - 1, &extent_w))
        throw py::value_error("conv2d: the padded input or the dilated kernel does not fit in int64");
    g.OH = conv2d_output_size(g.H, g.KH, stride_h, pad_top, pad_bottom, dilation_h);
    g.OW = conv2d_output_size(g.W, g.KW, stride_w, pad_left, pad_right, dilation_w);
    if (g.OH < 1 || g.OW < 1)
        throw py::value_error("conv2d: the kernel does not fit in the padded input (output would be " +
                              std::to_string(g.OH) + " x " + std::to_string(g.OW) + ")");
    return g;
}

// An optional array argument (None, or the array itself: never a converted copy).
struct Optional {
    bool given;
    py::array array;
};

Optional optional_array(const py::object& obj, const char* name) {
    if (obj.is_none()) return {false, py::array()};
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy array or None");
    return {true, py::reinterpret_borrow<py::array>(obj)};
}

py::array conv2d_forward_py(py::array out, const py::array& inp, const py::array& weight, const py::object& bias_obj,
                            int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                            int64_t pad_left, int64_t pad_right, int64_t dilation_h, int64_t dilation_w,
                            int64_t groups, int activation_code, double negative_slope) {
    const Activation activation = bind::activation_of(activation_code);
    const Conv2dGeometry g = geometry(inp, weight, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right,
                                      dilation_h, dilation_w, groups);
    Optional bias = optional_array(bias_obj, "bias");
    return bind::dispatch_float(inp, "input", [&](auto tag) -> py::array {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(inp, "input", 4);
        const T* w = bind::in_ptr<T>(weight, "weight", 4);
        const T* b = nullptr;
        if (bias.given) {
            b = bind::in_ptr<T>(bias.array, "bias", 1);
            bind::check_shape(bias.array, {g.OC}, "bias");
        }
        T* y = bind::out_ptr<T>(out, "out", 4);
        bind::check_shape(out, {g.N, g.OC, g.OH, g.OW}, "out");
        {
            py::gil_scoped_release release;
            conv2d_forward<T>(y, x, w, b, g, activation, T(negative_slope));
        }
        return out;
    });
}

void conv2d_backward_py(const py::object& grad_input_obj, const py::object& grad_weight_obj,
                        const py::object& grad_bias_obj, const py::array& grad_output, const py::array& inp,
                        const py::array& weight, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                        int64_t pad_bottom, int64_t pad_left, int64_t pad_right, int64_t dilation_h,
                        int64_t dilation_w, int64_t groups) {
    const Conv2dGeometry g = geometry(inp, weight, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right,
                                      dilation_h, dilation_w, groups);
    Optional grad_input = optional_array(grad_input_obj, "grad_input");
    Optional grad_weight = optional_array(grad_weight_obj, "grad_weight");
    Optional grad_bias = optional_array(grad_bias_obj, "grad_bias");
    bind::dispatch_float(inp, "input", [&](auto tag) {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(inp, "input", 4);
        const T* w = bind::in_ptr<T>(weight, "weight", 4);
        const T* dy = bind::in_ptr<T>(grad_output, "grad_output", 4);
        bind::check_shape(grad_output, {g.N, g.OC, g.OH, g.OW}, "grad_output");
        T* dx = nullptr;
        T* dw = nullptr;
        T* db = nullptr;
        if (grad_input.given) {
            dx = bind::out_ptr<T>(grad_input.array, "grad_input", 4);
            bind::check_shape(grad_input.array, {g.N, g.C, g.H, g.W}, "grad_input");
        }
        if (grad_weight.given) {
            dw = bind::out_ptr<T>(grad_weight.array, "grad_weight", 4);
            bind::check_shape(grad_weight.array, {g.OC, g.C / g.groups, g.KH, g.KW}, "grad_weight");
        }
        if (grad_bias.given) {
            db = bind::out_ptr<T>(grad_bias.array, "grad_bias", 1);
            bind::check_shape(grad_bias.array, {g.OC}, "grad_bias");
        }
        py::gil_scoped_release release;
        conv2d_backward<T>(dx, dw, db, dy, x, w, g);
    });
}

}  // namespace

void bind_conv(pybind11::module_& m) {
    m.def(
        "conv2d_set_algorithm",
        [](const std::string& name) {
            if (!conv2d_set_algorithm(name.c_str()))
                throw py::value_error("conv2d_set_algorithm: expected 'auto', 'im2col', 'implicit', 'direct' or "
                                      "'direct_rows', got '" +
                                      name + "'");
        },
        py::arg("name"),
        "For tests and measurements: how conv2d computes, 'auto' (per shape), 'im2col', 'implicit' (columns "
        "straight into the GEMM's packed panels; forward only), 'direct' (at most 16 float output channels, one "
        "group; forward and weight gradient) or 'direct_rows' (the same with vectors along output rows, where the "
        "stride along the width is 1 and rows are two vectors long; else as 'direct'). The forward's bits are the "
        "same for all; the weight gradients agree up to rounding.");
    m.def("conv2d_algorithm", &conv2d_algorithm, "The conv2d_set_algorithm setting.");
    m.def("conv2d_forward", &conv2d_forward_py, py::arg("out").noconvert(), py::arg("input").noconvert(),
          py::arg("weight").noconvert(), py::arg("bias"), py::arg("stride_h"), py::arg("stride_w"),
          py::arg("pad_top"), py::arg("pad_bottom"), py::arg("pad_left"), py::arg("pad_right"),
          py::arg("dilation_h"), py::arg("dilation_w"), py::arg("groups"), py::arg("activation") = 0,
          py::arg("negative_slope") = 0.0,
          "out (N, OC, OH, OW) = act(conv2d(input, weight) + bias), written in place; returns out. "
          "bias may be None; activation is a code (0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid).");
    m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_input"), py::arg("grad_weight"),
          py::arg("grad_bias"), py::arg("grad_output").noconvert(), py::arg("input").noconvert(),
          py::arg("weight").noconvert(), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"),
          py::arg("pad_bottom"), py::arg("pad_left"), py::arg("pad_right"), py::arg("dilation_h"),
          py::arg("dilation_w"), py::arg("groups"),
          "Gradients of conv2d_forward: grad_input is overwritten, grad_weight and grad_bias are "
          "added into; any of the three may be None to skip it.");
}

}  // namespace pycore
