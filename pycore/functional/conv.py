"""conv2d forward and backward (csrc/conv.cpp)."""

__all__ = []
