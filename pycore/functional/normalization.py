"""batch_norm forward and backward (csrc/batchnorm.cpp)."""

__all__ = []
