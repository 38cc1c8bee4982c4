"""fit(): the training loop with progress, history and callbacks."""

__all__ = []
