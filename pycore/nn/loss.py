"""CrossEntropyLoss, MSELoss, BCEWithLogitsLoss."""

__all__ = []
