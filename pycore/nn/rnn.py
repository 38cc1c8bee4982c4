"""RNN, LSTM, GRU."""

__all__ = []
