"""Optimizer base class."""

__all__ = []
