"""MaxPool2d, AvgPool2d."""

__all__ = []
