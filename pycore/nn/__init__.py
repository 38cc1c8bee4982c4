"""Layers with forward and backward, PyTorch's names, arguments and state_dict layouts."""
from .linear import Flatten, Linear
from .module import IncompatibleKeys, Module, Parameter, Sequential, StateDictError

__all__ = ["Module", "Parameter", "Sequential", "StateDictError", "IncompatibleKeys", "Linear", "Flatten"]
