"""Embedding: a lookup table of vectors indexed by integer ids."""
from __future__ import annotations

__all__ = ["Embedding"]
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import integer
from .._context import default_generator
from .module import Module, Parameter


class Embedding(Module):
    """y[..., :] = weight[indices[...], :], as torch.nn.Embedding.

    Args:
        num_embeddings (int): the vocabulary size, the number of rows.
        embedding_dim (int): the size of each vector.
        padding_idx (int or None, default None): that row starts at zero and never
            receives a gradient; negative values count from the end.
        dtype (np.float32 or np.float64, default np.float32): the weight's dtype.

    Shape:
        indices (*) of an integer dtype, values in [0, num_embeddings) -> output
        (*, embedding_dim).

    Attributes:
        weight (Parameter): (num_embeddings, embedding_dim), initialised N(0, 1) as in PyTorch.

    backward(grad_output) adds grad_output into the rows of weight.grad that forward
    read (a row used k times gets k contributions) and returns None: integer indices
    have no gradient. `requires_input_grad` is False from the start.

    Example::

        emb = pycore.nn.Embedding(65, 16)
        lstm = pycore.nn.LSTM(16, 128)
        y, state = lstm(emb(tokens))          # tokens (T, N) ints -> (T, N, 16)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.num_embeddings = integer(num_embeddings, "num_embeddings", minimum=1)
        self.embedding_dim = integer(embedding_dim, "embedding_dim", minimum=1)
        try:
            self.padding_idx = padding_idx = F.embedding_padding_idx(padding_idx, self.num_embeddings)
        except ValueError as err:
            raise ValueError(f"Embedding: {err}") from None
        weight = default_generator().standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)
        # The data feeds this layer: there is never an input gradient to compute.
        self.requires_input_grad = False

    def forward(self, indices: Any) -> np.ndarray:
        """Look up rows of the weight.

        Args:
            indices (array-like of ints): any shape (*), each in [0, num_embeddings).

        Returns:
            np.ndarray: weight[indices], (*, embedding_dim), a new array.
        """
        try:
            y, ctx = F.embedding_forward(indices, self.weight.data, self.padding_idx)
        except (TypeError, ValueError) as err:
            raise type(err)(f"Embedding: {err}") from None
        self._save_for_backward(ctx)
        return y

    def backward(self, grad_output: np.ndarray) -> None:
        """Gradient of the last forward's weight.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output,
                (*, embedding_dim), of the weight's dtype.

        Returns:
            None: indices have no gradient. Each output row's gradient is added into
            weight.grad at its index (the padding_idx row excepted; nothing when frozen).
        """
        (ctx,) = self._pop_saved()
        grad_output = self._check_input(grad_output, "grad_output")
        try:
            return F.embedding_backward(grad_output, ctx, self.weight.grad_buffer())
        except ValueError as err:
            raise ValueError(f"Embedding.backward: {err}") from None

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
