"""Embedding: a lookup table of vectors indexed by integer ids."""
__all__ = ["Embedding"]
import numpy as np

from .._checks import integer
from .._context import default_generator
from .module import Module, Parameter


class Embedding(Module):
    """y[..., :] = weight[indices[...], :], as torch.nn.Embedding.

    Args: num_embeddings (the vocabulary size), embedding_dim, padding_idx=None (that row
    starts at zero and never receives a gradient; negative values count from the end),
    dtype=np.float32.
    Shape: indices of any shape, integer dtype, values in [0, num_embeddings) ->
    output indices.shape + (embedding_dim,).
    Attributes: weight (num_embeddings, embedding_dim), initialised N(0, 1) as in PyTorch.
    backward(grad_output) adds grad_output into the rows of weight.grad that forward
    read (a row used k times gets k contributions) and returns None: integer indices
    have no gradient.

    Example::

        emb = pycore.nn.Embedding(65, 16)
        lstm = pycore.nn.LSTM(16, 128)
        y, state = lstm(emb(tokens))          # tokens (T, N) ints -> (T, N, 16)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32):
        super().__init__(dtype)
        self.num_embeddings = integer(num_embeddings, "num_embeddings", minimum=1)
        self.embedding_dim = integer(embedding_dim, "embedding_dim", minimum=1)
        if padding_idx is not None:
            padding_idx = integer(padding_idx, "padding_idx")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx: expected a value in [{-self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        weight = default_generator().standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)
        # The data feeds this layer: there is never an input gradient to compute.
        self.requires_input_grad = False

    def _check_indices(self, indices):
        if not isinstance(indices, np.ndarray):
            indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices: expected an integer array, got dtype {indices.dtype}")
        if indices.size:
            low, high = indices.min(), indices.max()
            if low < 0 or high >= self.num_embeddings:
                bad = low if low < 0 else high
                raise ValueError(f"Embedding: indices: expected values in [0, {self.num_embeddings}) "
                                 f"(num_embeddings), got {bad}")
        return indices

    def forward(self, indices):
        indices = self._check_indices(indices)
        self._save_for_backward(indices)
        return self.weight.data[indices]

    def backward(self, grad_output):
        (indices,) = self._pop_saved()
        grad_output = self._check_input(grad_output, "grad_output")
        expected = indices.shape + (self.embedding_dim,)
        if grad_output.shape != expected:
            raise ValueError(f"Embedding.backward: grad_output has shape {grad_output.shape}, expected {expected}")
        flat_idx = indices.reshape(-1)
        flat_grad = grad_output.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat_idx != self.padding_idx
            flat_idx, flat_grad = flat_idx[keep], flat_grad[keep]
        grad_weight = self.weight.grad_buffer()
        if grad_weight is not None:  # None: the weight is frozen (requires_grad=False)
            np.add.at(grad_weight, flat_idx, flat_grad)
        return None

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
