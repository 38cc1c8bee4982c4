"""Stateless operations on numpy arrays (import as F), PyTorch's torch.nn.functional names.

Forward functions return new arrays; the `*_backward` functions return gradients and
are what the modules in pycore.nn call.
"""
from .linalg import gemm, linear, linear_backward, matmul

__all__ = ["gemm", "linear", "linear_backward", "matmul"]
