// bind_loss.cpp: the loss kernels' Python functions.
#include "bind_util.h"

namespace pycore {

void bind_loss(pybind11::module_& m) {}

}  // namespace pycore
