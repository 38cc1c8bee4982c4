"""RMSprop."""

__all__ = []
