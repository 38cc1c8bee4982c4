// bindings.cpp: the one pybind11 module, pycore._C. Each op family adds its functions
// from its own bind_<family>.cpp; this file only lists them.
#include "bind_util.h"

PYBIND11_MODULE(_C, m) {
    m.doc() = "pycore's compiled kernels (C++ and OpenMP). Use pycore.functional and pycore.nn.";
    pycore::bind_core(m);
    pycore::bind_gemm(m);
    pycore::bind_conv(m);
    pycore::bind_elementwise(m);
    pycore::bind_rnn(m);
    pycore::bind_loss(m);
    pycore::bind_optim(m);
    pycore::bind_memory(m);
}
