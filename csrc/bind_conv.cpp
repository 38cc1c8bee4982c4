// bind_conv.cpp: the conv kernels' Python functions.
#include "bind_util.h"

namespace pycore {

void bind_conv(pybind11::module_& m) {}

}  // namespace pycore
