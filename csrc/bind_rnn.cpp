// bind_rnn.cpp: the rnn kernels' Python functions.
#include "bind_util.h"

namespace pycore {

void bind_rnn(pybind11::module_& m) {}

}  // namespace pycore
