"""Truncated backpropagation through time: chunking a stream and carrying a detached state."""

__all__ = []
