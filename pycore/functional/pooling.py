"""max_pool2d and avg_pool2d forward and backward (csrc/pool2d.pyx)."""

__all__ = []
