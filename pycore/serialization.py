"""save / load: safe, atomic checkpoints."""

__all__ = []
