// bind_optim.cpp: the optim kernels' Python functions.
#include "bind_util.h"

namespace pycore {

void bind_optim(pybind11::module_& m) {}

}  // namespace pycore
