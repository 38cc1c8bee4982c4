"""Stateless operations on numpy arrays (import as F), with torch.nn.functional's names.

Forward functions return new arrays; the `*_backward` functions return gradients and
are what the modules in pycore.nn call.
"""
from . import activation, adaptive_pool, conv, dropout, fused, linalg, loss, merge, normalization, pooling, rnn
from . import dropout as _dropout_module  # `from .dropout import *` rebinds `dropout` to the function
from .activation import *  # noqa: F401,F403
from .adaptive_pool import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403

__all__ = (activation.__all__ + adaptive_pool.__all__ + conv.__all__ + _dropout_module.__all__ + fused.__all__
           + linalg.__all__ + loss.__all__ + merge.__all__
           + normalization.__all__ + pooling.__all__ + rnn.__all__)
