// bind_gemm.cpp: gemm(a, b, c, trans_a, trans_b, alpha, beta) on numpy arrays.
#include "bind_util.h"
#include "gemm.h"

#include <string>
#include <tuple>
#include <vector>

namespace pycore {
namespace {

namespace py = pybind11;

// A 2-D operand as the kernel sees it: a pointer, a row stride and whether to
// transpose. A C-ordered matrix (or a slice of one with unit column stride) is used
// in place; a Fortran-ordered one (a transposed view) is the C-ordered transpose of
// its own buffer, so it is used in place with the transpose flag flipped. Anything
// else (negative or odd strides, broadcast views) has been copied by the Python layer.
template <class T>
struct Operand {
    const T* data;
    int64_t ld;
    bool trans;
};

template <class T>
Operand<T> operand(const py::array& a, bool trans, const char* name) {
    if (!bind::has_dtype<T>(a))
        throw py::type_error(std::string(name) + ": dtype " + bind::dtype_str(a) +
                             " does not match the other operand");
    if (a.ndim() != 2) throw py::value_error(std::string(name) + ": expected a 2-D array, got shape " + bind::shape_str(a));
    const int64_t item = sizeof(T), rows = a.shape(0), cols = a.shape(1);
    const int64_t s0 = a.strides(0), s1 = a.strides(1);
    const T* data = static_cast<const T*>(a.data());
    if (a.size() == 0) return {data, std::max<int64_t>(cols, 1), trans};  // never read
    if ((s1 == item || cols <= 1) && s0 % item == 0 && s0 >= std::max<int64_t>(cols, 1) * item)
        return {data, s0 / item, trans};
    if ((s0 == item || rows <= 1) && s1 % item == 0 && s1 >= std::max<int64_t>(rows, 1) * item)
        return {data, s1 / item, !trans};
    if (rows <= 1 && cols <= 1) return {data, 1, trans};
    throw py::value_error(std::string(name) + ": strided layout not supported here; pass a contiguous array");
}

py::array gemm_py(const py::array& a, const py::array& b, py::array c, bool trans_a, bool trans_b,
                  double alpha, double beta, const py::object& row_bias, const py::object& col_bias,
                  int activation_code, double negative_slope) {
    const Activation activation = bind::activation_of(activation_code);
    if (!row_bias.is_none() && !col_bias.is_none())
        throw py::value_error("gemm: give row_bias or col_bias, not both");
    return bind::dispatch_float(c, "c", [&](auto tag) -> py::array {
        using T = decltype(tag);
        T* cp = bind::out_ptr<T>(c, "c", 2);
        const Operand<T> A = operand<T>(a, trans_a, "a"), B = operand<T>(b, trans_b, "b");
        const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
        if (K != Kb)
            throw py::value_error("gemm: inner dimensions differ: op(a) has shape (" + std::to_string(M) + ", " +
                                  std::to_string(K) + "), op(b) has shape (" + std::to_string(Kb) + ", " +
                                  std::to_string(N) + ")");
        bind::check_shape(c, {M, N}, "c");
        // The epilogue (gemm.h): a bias per row or per column of C, then the activation.
        // The bias arrays are the caller's own (no converted copy whose buffer could go away).
        GemmEpilogue<T> epilogue{nullptr, nullptr, activation, T(negative_slope)};
        for (const auto& [given, name, size, target] :
             {std::make_tuple(&row_bias, "row_bias", M, &epilogue.row_bias),
              std::make_tuple(&col_bias, "col_bias", N, &epilogue.col_bias)}) {
            if (given->is_none()) continue;
            if (!py::isinstance<py::array>(*given))
                throw py::type_error(std::string(name) + ": expected a numpy array or None");
            const py::array bias = py::reinterpret_borrow<py::array>(*given);
            *target = bind::in_ptr<T>(bias, name, 1);
            bind::check_shape(bias, {size}, name);
        }
        const bool has_epilogue = epilogue.row_bias || epilogue.col_bias || activation != Activation::kNone;
        {
            py::gil_scoped_release release;
            gemm<T>(A.trans, B.trans, M, N, K, T(alpha), A.data, A.ld, B.data, B.ld, T(beta), cp, N,
                    has_epilogue ? &epilogue : nullptr);
        }
        return c;
    });
}

// The same product with one operand packed first (PackedMatrix), for the tests: side
// "a" or "b" says which. Each element of `cs` gets alpha * op(a) @ op(b) + beta * c with
// the one packing reused for all of them, as a recurrent layer reuses W_hh.
py::list gemm_prepacked_py(const std::string& side, const py::array& a, const py::array& b, py::list cs,
                           bool trans_a, bool trans_b, double alpha, double beta) {
    if (side != "a" && side != "b") throw py::value_error("side: expected 'a' or 'b', got '" + side + "'");
    if (cs.size() == 0) return cs;
    const py::array c0 = cs[0].cast<py::array>();
    return bind::dispatch_float(c0, "cs[0]", [&](auto tag) -> py::list {
        using T = decltype(tag);
        const Operand<T> A = operand<T>(a, trans_a, "a"), B = operand<T>(b, trans_b, "b");
        const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
        if (K != Kb) throw py::value_error("gemm_prepacked: inner dimensions differ");
        std::vector<T*> outs;
        for (auto item : cs) {
            py::array c = item.cast<py::array>();
            outs.push_back(bind::out_ptr<T>(c, "c", 2));
            bind::check_shape(c, {M, N}, "c");
        }
        py::gil_scoped_release release;
        if (side == "a") {
            const PackedMatrix<T> packed = PackedMatrix<T>::pack_a(A.trans, M, K, A.data, A.ld);
            for (T* cp : outs) gemm_packed_a<T>(packed, B.trans, N, T(alpha), B.data, B.ld, T(beta), cp, N);
        } else {
            const PackedMatrix<T> packed = PackedMatrix<T>::pack_b(B.trans, K, N, B.data, B.ld);
            for (T* cp : outs) gemm_packed_b<T>(A.trans, M, T(alpha), A.data, A.ld, packed, T(beta), cp, N);
        }
        return cs;
    });
}

}  // namespace

void bind_gemm(pybind11::module_& m) {
    m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
          py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("row_bias") = py::none(),
          py::arg("col_bias") = py::none(), py::arg("activation") = 0, py::arg("negative_slope") = 0.0,
          "c = act(alpha * op(a) @ op(b) + beta * c + bias), in place; returns c. c must be C-contiguous. "
          "The bias (row_bias (M,) or col_bias (N,), optional) and the activation (a code: 0 none, 1 relu, "
          "2 leaky_relu, 3 tanh, 4 sigmoid) are the GEMM's epilogue (gemm.h).");
    m.def("gemm_prepacked", &gemm_prepacked_py, py::arg("side"), py::arg("a"), py::arg("b"), py::arg("cs"),
          py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
          "For tests: gemm with operand `side` ('a' or 'b') packed once (PackedMatrix) and reused for "
          "every C-contiguous array in the list cs; returns cs.");
}

}  // namespace pycore
