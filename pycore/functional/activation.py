"""relu, leaky_relu, sigmoid, tanh, softmax, log_softmax and their backwards (csrc/elementwise.cpp)."""

__all__ = []
