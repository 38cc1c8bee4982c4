// bind_optim.cpp: the optimizers' fused per-tensor updates (pycore.optim calls them).
//
// Each function updates `param` and its state arrays in place; all must be C-contiguous,
// writeable arrays of the parameter's dtype and shape (the Python optimizer creates
// the state that way). Optional state is None when its option is off.
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "bind_util.h"
#include "optim.h"

namespace pycore {
namespace {

namespace py = pybind11;

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

// A state array updated in place, with the parameter's dtype and shape.
template <class T>
T* state_ptr(py::array& a, const py::array& param, const char* name) {
    T* p = bind::out_ptr<T>(a, name);
    bind::check_shape(a, shape_of(param), name);
    return p;
}

template <class T>
T* optional_state_ptr(std::optional<py::array>& a, const py::array& param, const char* name) {
    return a ? state_ptr<T>(*a, param, name) : nullptr;
}

template <class T>
const T* grad_ptr(const py::array& grad, const py::array& param) {
    const T* g = bind::in_ptr<T>(grad, "grad");
    bind::check_shape(grad, shape_of(param), "grad");
    return g;
}

void sgd_step_py(py::array param, const py::array& grad, std::optional<py::array> momentum_buffer, double lr,
                 double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                 bool first_step) {
    bind::dispatch_float(param, "param", [&](auto tag) {
        using T = decltype(tag);
        T* p = bind::out_ptr<T>(param, "param");
        const T* g = grad_ptr<T>(grad, param);
        T* buf = optional_state_ptr<T>(momentum_buffer, param, "momentum_buffer");
        py::gil_scoped_release release;
        sgd_step<T>(p, buf, g, param.size(), lr, momentum, dampening, weight_decay, nesterov, maximize, first_step);
    });
}

void adam_step_py(py::array param, const py::array& grad, py::array exp_avg, py::array exp_avg_sq,
                  std::optional<py::array> max_exp_avg_sq, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bool decoupled_weight_decay, double step_size, double bias_correction2_sqrt,
                  bool maximize) {
    bind::dispatch_float(param, "param", [&](auto tag) {
        using T = decltype(tag);
        T* p = bind::out_ptr<T>(param, "param");
        const T* g = grad_ptr<T>(grad, param);
        T* m = state_ptr<T>(exp_avg, param, "exp_avg");
        T* v = state_ptr<T>(exp_avg_sq, param, "exp_avg_sq");
        T* v_max = optional_state_ptr<T>(max_exp_avg_sq, param, "max_exp_avg_sq");
        py::gil_scoped_release release;
        adam_step<T>(p, m, v, v_max, g, param.size(), lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                     step_size, bias_correction2_sqrt, maximize);
    });
}

void rmsprop_step_py(py::array param, const py::array& grad, py::array square_avg, std::optional<py::array> grad_avg,
                     std::optional<py::array> momentum_buffer, double lr, double alpha, double eps,
                     double weight_decay, double momentum, bool maximize) {
    bind::dispatch_float(param, "param", [&](auto tag) {
        using T = decltype(tag);
        T* p = bind::out_ptr<T>(param, "param");
        const T* g = grad_ptr<T>(grad, param);
        T* sq = state_ptr<T>(square_avg, param, "square_avg");
        T* ga = optional_state_ptr<T>(grad_avg, param, "grad_avg");
        T* buf = optional_state_ptr<T>(momentum_buffer, param, "momentum_buffer");
        py::gil_scoped_release release;
        rmsprop_step<T>(p, sq, ga, buf, g, param.size(), lr, alpha, eps, weight_decay, momentum, maximize);
    });
}

}  // namespace

void bind_optim(pybind11::module_& m) {
    m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
          py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
          py::arg("maximize"), py::arg("first_step"), "One SGD update of param (and momentum_buffer) in place.");
    m.def("adam_step", &adam_step_py, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
          py::arg("max_exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("decoupled_weight_decay"), py::arg("step_size"),
          py::arg("bias_correction2_sqrt"), py::arg("maximize"),
          "One Adam/AdamW update of param and its moments in place.");
    m.def("rmsprop_step", &rmsprop_step_py, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
          py::arg("grad_avg"), py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("momentum"), py::arg("maximize"),
          "One RMSprop update of param and its state in place.");
}

}  // namespace pycore
