"""DataLoader over numpy arrays."""

__all__ = []
