"""dropout forward and backward."""

__all__ = []
