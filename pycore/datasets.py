"""MNIST, scikit-learn digits, character streams."""

__all__ = []
