// bind_rnn.cpp: rnn_forward / rnn_backward (csrc/rnn.h) on numpy arrays.
//
// Optional arrays (a zero initial state, a layer without biases, a gradient nobody
// asked for) are passed as None and reach the kernel as null pointers.
#include <string>

#include "bind_util.h"
#include "rnn.h"

namespace pycore {
namespace {

namespace py = pybind11;

struct Dims {
    int64_t steps, batch, input_size, hidden, gates;
};

// Dims from x (T, N, I) and w_hh (G*H, H), checked against the mode's gate count.
Dims dims_of(int mode, const py::array& x, const py::array& w_hh) {
    const int64_t G = rnn_gate_count(mode);
    if (G == 0) throw py::value_error("rnn: unknown mode " + std::to_string(mode));
    if (x.ndim() != 3) throw py::value_error("x: expected a 3-D array (T, N, I), got shape " + bind::shape_str(x));
    if (w_hh.ndim() != 2 || w_hh.shape(0) != G * w_hh.shape(1))
        throw py::value_error("w_hh: expected shape (" + std::to_string(G) + "*H, H), got " +
                              bind::shape_str(w_hh));
    return {x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1), G};
}

template <class T>
const T* in(const py::array& a, const char* name, const std::vector<int64_t>& shape) {
    const T* p = bind::in_ptr<T>(a, name);
    bind::check_shape(a, shape, name);
    return p;
}

template <class T>
T* out(py::array& a, const char* name, const std::vector<int64_t>& shape) {
    T* p = bind::out_ptr<T>(a, name);
    bind::check_shape(a, shape, name);
    return p;
}

// None -> nullptr; otherwise an input array of the given shape.
template <class T>
const T* opt_in(const py::object& o, const char* name, const std::vector<int64_t>& shape) {
    if (o.is_none()) return nullptr;
    return in<T>(o.cast<py::array>(), name, shape);
}

template <class T>
T* opt_out(const py::object& o, const char* name, const std::vector<int64_t>& shape) {
    if (o.is_none()) return nullptr;
    py::array a = o.cast<py::array>();
    return out<T>(a, name, shape);
}

void forward_py(int mode, py::array y, py::array gates, const py::object& cell, const py::object& cell_tanh,
                const py::array& x, const py::object& h0, const py::object& c0, const py::array& w_ih,
                const py::array& w_hh, const py::object& b_ih, const py::object& b_hh) {
    const Dims d = dims_of(mode, x, w_hh);
    const int64_t T_ = d.steps, N = d.batch, I = d.input_size, H = d.hidden, GH = d.gates * d.hidden;
    if (mode == kLstm && (cell.is_none() || cell_tanh.is_none()))
        throw py::value_error("rnn_forward: LSTM needs the cell and cell_tanh buffers");
    if (mode == kGru && cell.is_none()) throw py::value_error("rnn_forward: GRU needs the cell buffer");
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        T* yp = out<T>(y, "y", {T_, N, H});
        T* gp = out<T>(gates, "gates", {T_, N, GH});
        T* cp = opt_out<T>(cell, "cell", {T_, N, H});
        T* tp = opt_out<T>(cell_tanh, "cell_tanh", {T_, N, H});
        const T* xp = in<T>(x, "x", {T_, N, I});
        const T* h0p = opt_in<T>(h0, "h0", {N, H});
        const T* c0p = opt_in<T>(c0, "c0", {N, H});
        const T* wip = in<T>(w_ih, "w_ih", {GH, I});
        const T* whp = in<T>(w_hh, "w_hh", {GH, H});
        const T* bip = opt_in<T>(b_ih, "b_ih", {GH});
        const T* bhp = opt_in<T>(b_hh, "b_hh", {GH});
        py::gil_scoped_release release;
        rnn_forward<T>(mode, yp, gp, cp, tp, xp, h0p, c0p, wip, whp, bip, bhp, T_, N, I, H);
    });
}

void backward_py(int mode, const py::object& dx, const py::object& dh0, const py::object& dc0, py::array dw_ih,
                 py::array dw_hh, const py::object& db_ih, const py::object& db_hh, const py::object& dy,
                 const py::object& dh_n, const py::object& dc_n, const py::array& y, const py::array& gates,
                 const py::object& cell, const py::object& cell_tanh, const py::array& x, const py::object& h0,
                 const py::object& c0, const py::array& w_ih, const py::array& w_hh) {
    const Dims d = dims_of(mode, x, w_hh);
    const int64_t T_ = d.steps, N = d.batch, I = d.input_size, H = d.hidden, GH = d.gates * d.hidden;
    if (mode == kLstm && (cell.is_none() || cell_tanh.is_none()))
        throw py::value_error("rnn_backward: LSTM needs the saved cell and cell_tanh");
    if (mode == kGru && cell.is_none()) throw py::value_error("rnn_backward: GRU needs the saved cell buffer");
    bind::dispatch_float(x, "x", [&](auto tag) {
        using T = decltype(tag);
        T* dxp = opt_out<T>(dx, "dx", {T_, N, I});
        T* dh0p = opt_out<T>(dh0, "dh0", {N, H});
        T* dc0p = opt_out<T>(dc0, "dc0", {N, H});
        T* dwip = out<T>(dw_ih, "dw_ih", {GH, I});
        T* dwhp = out<T>(dw_hh, "dw_hh", {GH, H});
        T* dbip = opt_out<T>(db_ih, "db_ih", {GH});
        T* dbhp = opt_out<T>(db_hh, "db_hh", {GH});
        const T* dyp = opt_in<T>(dy, "dy", {T_, N, H});
        const T* dhnp = opt_in<T>(dh_n, "dh_n", {N, H});
        const T* dcnp = opt_in<T>(dc_n, "dc_n", {N, H});
        const T* yp = in<T>(y, "y", {T_, N, H});
        const T* gp = in<T>(gates, "gates", {T_, N, GH});
        const T* cp = opt_in<T>(cell, "cell", {T_, N, H});
        const T* tp = opt_in<T>(cell_tanh, "cell_tanh", {T_, N, H});
        const T* xp = in<T>(x, "x", {T_, N, I});
        const T* h0p = opt_in<T>(h0, "h0", {N, H});
        const T* c0p = opt_in<T>(c0, "c0", {N, H});
        const T* wip = in<T>(w_ih, "w_ih", {GH, I});
        const T* whp = in<T>(w_hh, "w_hh", {GH, H});
        py::gil_scoped_release release;
        rnn_backward<T>(mode, dxp, dh0p, dc0p, dwip, dwhp, dbip, dbhp, dyp, dhnp, dcnp, yp, gp, cp, tp, xp, h0p,
                        c0p, wip, whp, T_, N, I, H);
    });
}

}  // namespace

void bind_rnn(pybind11::module_& m) {
    m.attr("RNN_TANH") = static_cast<int>(kRnnTanh);
    m.attr("RNN_RELU") = static_cast<int>(kRnnRelu);
    m.attr("LSTM") = static_cast<int>(kLstm);
    m.attr("GRU") = static_cast<int>(kGru);
    m.def("rnn_forward", &forward_py, py::arg("mode"), py::arg("y"), py::arg("gates"), py::arg("cell"),
          py::arg("cell_tanh"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
          py::arg("b_ih"), py::arg("b_hh"),
          "One recurrent layer over T steps (csrc/rnn.h): fills y (T, N, H) and the saved buffers in place.");
    m.def("rnn_backward", &backward_py, py::arg("mode"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
          py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"), py::arg("db_hh"), py::arg("dy"), py::arg("dh_n"),
          py::arg("dc_n"), py::arg("y"), py::arg("gates"), py::arg("cell"), py::arg("cell_tanh"), py::arg("x"),
          py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
          "Backward through time of rnn_forward: writes dx, dh0, dc0 and adds into the parameter gradients.");
}

}  // namespace pycore
