// bind_loss.cpp: the loss kernels' Python functions (pycore.functional.loss calls them).
//
// Upstream gradients `dlosses` hold either one value per row/element (reduction='none')
// or a single value shared by all (reduction 'mean'/'sum', already divided by the
// mean's denominator): the kernels read them with stride 1 or 0.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bind_util.h"
#include "loss.h"

namespace pycore {
namespace {

namespace py = pybind11;

// Stride with which a kernel reads `dlosses`: 0 for one shared value, 1 for one per item.
int64_t dlosses_stride(const py::array& dlosses, int64_t items) {
    if (dlosses.size() == 1 && items != 1) return 0;
    if (dlosses.size() == items) return 1;
    throw py::value_error("dlosses: expected 1 or " + std::to_string(items) + " values, got shape " +
                          bind::shape_str(dlosses));
}

template <class T>
const T* optional_in_ptr(const std::optional<py::array>& a, const char* name, int64_t size) {
    if (!a) return nullptr;
    const T* p = bind::in_ptr<T>(*a, name, 1);
    bind::check_shape(*a, {size}, name);
    return p;
}

// The binding's own range check (the Python layer has already made a readable one):
// an out-of-range target would index past the row.
void check_targets(const int64_t* targets, int64_t R, int64_t C, int64_t ignore_index) {
    for (int64_t r = 0; r < R; ++r)
        if (targets[r] != ignore_index && (targets[r] < 0 || targets[r] >= C))
            throw py::value_error("target: value " + std::to_string(targets[r]) + " at row " + std::to_string(r) +
                                  " is outside [0, " + std::to_string(C) + ") and is not ignore_index");
}

// (losses (R,), logsumexp (R,)) for logits (R, C) and int64 targets (R,).
py::tuple cross_entropy_forward_py(const py::array& logits, const py::array& targets,
                                   const std::optional<py::array>& weight, double label_smoothing,
                                   int64_t ignore_index) {
    return bind::dispatch_float(logits, "logits", [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(logits, "logits", 2);
        const int64_t R = logits.shape(0), C = logits.shape(1);
        const int64_t* t = bind::in_ptr<int64_t>(targets, "targets", 1);
        bind::check_shape(targets, {R}, "targets");
        const T* w = optional_in_ptr<T>(weight, "weight", C);
        check_targets(t, R, C, ignore_index);
        auto losses = bind::new_array<T>({R});
        auto lse = bind::new_array<double>({R});
        T* losses_p = losses.mutable_data();
        double* lse_p = lse.mutable_data();
        {
            py::gil_scoped_release release;
            cross_entropy_forward<T>(losses_p, lse_p, x, t, w, label_smoothing, ignore_index, R, C);
        }
        return py::make_tuple(losses, lse);
    });
}

py::array cross_entropy_backward_py(const py::array& dlosses, const py::array& logsumexp, const py::array& logits,
                                    const py::array& targets, const std::optional<py::array>& weight,
                                    double label_smoothing, int64_t ignore_index) {
    return bind::dispatch_float(logits, "logits", [&](auto tag) -> py::array {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(logits, "logits", 2);
        const int64_t R = logits.shape(0), C = logits.shape(1);
        const int64_t* t = bind::in_ptr<int64_t>(targets, "targets", 1);
        bind::check_shape(targets, {R}, "targets");
        const double* lse = bind::in_ptr<double>(logsumexp, "logsumexp", 1);
        bind::check_shape(logsumexp, {R}, "logsumexp");
        const T* g = bind::in_ptr<T>(dlosses, "dlosses");
        const int64_t g_stride = dlosses_stride(dlosses, R);
        const T* w = optional_in_ptr<T>(weight, "weight", C);
        check_targets(t, R, C, ignore_index);
        auto dlogits = bind::new_array<T>({R, C});
        T* dx = dlogits.mutable_data();
        {
            py::gil_scoped_release release;
            cross_entropy_backward<T>(dx, g, g_stride, lse, x, t, w, label_smoothing, ignore_index, R, C);
        }
        return dlogits;
    });
}

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

// pos_weight: None or a 1-D array whose length P divides the input's element count
// (the Python layer allows P == 1 or P == the input's last axis). Null and P = 1 for None.
template <class T>
std::tuple<const T*, int64_t> pos_weight_ptr(const std::optional<py::array>& pos_weight, const py::array& input) {
    if (!pos_weight) return {nullptr, 1};
    const T* p = bind::in_ptr<T>(*pos_weight, "pos_weight", 1);
    const int64_t P = pos_weight->size();
    if (P < 1 || input.size() % P != 0)
        throw py::value_error("pos_weight: its length " + std::to_string(P) + " does not divide the input's size " +
                              std::to_string(input.size()));
    return {p, P};
}

// (sum of the element losses, the element losses or None) for an element-wise loss:
// forward(elements or null, input, target, pos_weight or null, P, n) returns the sum.
template <class Forward>
py::tuple elementwise_forward(const py::array& input, const py::array& target,
                              const std::optional<py::array>& pos_weight, bool keep_elements, Forward&& forward) {
    return bind::dispatch_float(input, "input", [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(input, "input");
        const T* y = bind::in_ptr<T>(target, "target");
        bind::check_shape(target, shape_of(input), "target");
        const auto [pw, P] = pos_weight_ptr<T>(pos_weight, input);
        py::object elements = py::none();
        T* elements_p = nullptr;
        if (keep_elements) {
            auto e = bind::new_array<T>(shape_of(input));
            elements_p = e.mutable_data();
            elements = e;
        }
        double total;
        {
            py::gil_scoped_release release;
            total = forward(elements_p, x, y, pw, P, int64_t(input.size()));
        }
        return py::make_tuple(total, elements);
    });
}

// The gradient of the input: backward(dinput, dlosses, stride, input, target, pos_weight, P, n).
template <class Backward>
py::array elementwise_backward(const py::array& dlosses, const py::array& input, const py::array& target,
                               const std::optional<py::array>& pos_weight, Backward&& backward) {
    return bind::dispatch_float(input, "input", [&](auto tag) -> py::array {
        using T = decltype(tag);
        const T* x = bind::in_ptr<T>(input, "input");
        const T* y = bind::in_ptr<T>(target, "target");
        bind::check_shape(target, shape_of(input), "target");
        const auto [pw, P] = pos_weight_ptr<T>(pos_weight, input);
        const int64_t n = input.size();
        const T* g = bind::in_ptr<T>(dlosses, "dlosses");
        const int64_t g_stride = dlosses_stride(dlosses, n);
        auto dinput = bind::new_array<T>(shape_of(input));
        T* dx = dinput.mutable_data();
        {
            py::gil_scoped_release release;
            backward(dx, g, g_stride, x, y, pw, P, n);
        }
        return dinput;
    });
}

py::tuple mse_forward_py(const py::array& input, const py::array& target, bool keep_elements) {
    return elementwise_forward(input, target, std::nullopt, keep_elements,
                               [](auto* e, auto* x, auto* y, auto*, int64_t, int64_t n) { return mse_forward(e, x, y, n); });
}

py::array mse_backward_py(const py::array& dlosses, const py::array& input, const py::array& target) {
    return elementwise_backward(dlosses, input, target, std::nullopt,
                                [](auto* dx, auto* g, int64_t s, auto* x, auto* y, auto*, int64_t, int64_t n) {
                                    mse_backward(dx, g, s, x, y, n);
                                });
}

py::tuple bce_forward_py(const py::array& input, const py::array& target, const std::optional<py::array>& pos_weight,
                         bool keep_elements) {
    return elementwise_forward(input, target, pos_weight, keep_elements,
                               [](auto* e, auto* x, auto* y, auto* pw, int64_t P, int64_t n) {
                                   return bce_with_logits_forward(e, x, y, pw, P, n);
                               });
}

py::array bce_backward_py(const py::array& dlosses, const py::array& input, const py::array& target,
                          const std::optional<py::array>& pos_weight) {
    return elementwise_backward(dlosses, input, target, pos_weight,
                                [](auto* dx, auto* g, int64_t s, auto* x, auto* y, auto* pw, int64_t P, int64_t n) {
                                    bce_with_logits_backward(dx, g, s, x, y, pw, P, n);
                                });
}

}  // namespace

void bind_loss(pybind11::module_& m) {
    m.def("cross_entropy_forward", &cross_entropy_forward_py, py::arg("logits"), py::arg("targets"),
          py::arg("weight"), py::arg("label_smoothing"), py::arg("ignore_index"),
          "(losses (R,), float64 logsumexp (R,)) of cross entropy over logits (R, C) with int64 targets (R,).");
    m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("dlosses"), py::arg("logsumexp"),
          py::arg("logits"), py::arg("targets"), py::arg("weight"), py::arg("label_smoothing"),
          py::arg("ignore_index"), "dlogits (R, C) given the gradient of each row's loss (R,) or of all (1,).");
    m.def("mse_forward", &mse_forward_py, py::arg("input"), py::arg("target"), py::arg("keep_elements"),
          "(sum of (input - target)^2, the element losses or None).");
    m.def("mse_backward", &mse_backward_py, py::arg("dlosses"), py::arg("input"), py::arg("target"),
          "2 (input - target) * dlosses.");
    m.def("bce_with_logits_forward", &bce_forward_py, py::arg("input"), py::arg("target"), py::arg("pos_weight"),
          py::arg("keep_elements"), "(sum of the element losses, the element losses or None).");
    m.def("bce_with_logits_backward", &bce_backward_py, py::arg("dlosses"), py::arg("input"), py::arg("target"),
          py::arg("pos_weight"), "gradient of the input given the gradient of each element's loss or of all.");
}

}  // namespace pycore
