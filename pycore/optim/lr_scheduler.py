"""StepLR, CosineAnnealingLR."""

__all__ = []
