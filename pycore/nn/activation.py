"""ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax."""

__all__ = []
