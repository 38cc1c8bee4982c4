"""Stateless operations on numpy arrays (import as F), with torch.nn.functional's names.

Every op family with a gradient follows one contract (llm.c's forward/backward pairs):

    y = X(x, ...)                        torch.nn.functional's name: the output only
    y, ctx = X_forward(x, ...)           the output(s), then ctx: everything backward needs
    grads = X_backward(grad_output, ctx, grad_weight=None, ..., need_input_grad=True)

X_backward returns the input's gradient (None when need_input_grad is False) and adds
each parameter's gradient into the buffer passed for it (llm.c's `+=`; None skips that
gradient: a frozen parameter). ctx is opaque to callers: a namedtuple per family, or the
saved array itself where one is enough (relu keeps its output). See DEVELOPERS.md.

Example:
    >>> import numpy as np
    >>> import pycore.functional as F
    >>> x = np.array([[-1.0, 2.0]], dtype=np.float32)
    >>> weight = np.ones((3, 2), dtype=np.float32)
    >>> y, ctx = F.linear_forward(x, weight)
    >>> grad_weight = np.zeros_like(weight)
    >>> F.linear_backward(np.ones_like(y), ctx, grad_weight)  # returns dL/dx
    array([[3., 3.]], dtype=float32)
    >>> grad_weight  # dL/dweight was added into the buffer
    array([[-1.,  2.],
           [-1.,  2.],
           [-1.,  2.]], dtype=float32)
"""
from . import activation, adaptive_pool, conv, fused, linalg, loss, merge, normalization, pooling, rnn

# (not `from . import dropout, embedding`: the star-imports below rebind those names to the functions)
from . import dropout as _dropout_module
from . import embedding as _embedding_module
from .activation import *  # noqa: F401,F403
from .adaptive_pool import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403

__all__ = (activation.__all__ + adaptive_pool.__all__ + conv.__all__ + _dropout_module.__all__
           + _embedding_module.__all__ + fused.__all__ + linalg.__all__ + loss.__all__ + merge.__all__
           + normalization.__all__ + pooling.__all__ + rnn.__all__)
