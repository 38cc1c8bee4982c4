"""cross_entropy, mse_loss, binary_cross_entropy_with_logits and their backwards (csrc/loss.cpp)."""

__all__ = []
