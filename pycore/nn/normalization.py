"""BatchNorm2d."""

__all__ = []
