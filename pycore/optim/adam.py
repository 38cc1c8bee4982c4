"""Adam, AdamW."""

__all__ = []
