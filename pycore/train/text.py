"""Training a character model with truncated BPTT, and sampling text from it."""

__all__ = []
