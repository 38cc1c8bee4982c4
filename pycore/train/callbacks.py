"""EarlyStopping, ModelCheckpoint and the Callback base."""

__all__ = []
