// bind_elementwise.cpp: the elementwise kernels' Python functions.
#include "bind_util.h"

namespace pycore {

void bind_elementwise(pybind11::module_& m) {}

}  // namespace pycore
