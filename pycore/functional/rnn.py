"""RNN/LSTM/GRU sequence forward and backward through time (csrc/rnn.cpp)."""

__all__ = []
