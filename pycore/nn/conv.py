"""Conv2d."""

__all__ = []
