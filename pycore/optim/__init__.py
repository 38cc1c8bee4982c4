"""Optimizers (their update loops fused in C++), learning-rate schedulers and gradient clipping."""
from . import adam, clip, lr_scheduler, optimizer, rmsprop, sgd
from .adam import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
from .lr_scheduler import *  # noqa: F401,F403
from .optimizer import *  # noqa: F401,F403
from .rmsprop import *  # noqa: F401,F403
from .sgd import *  # noqa: F401,F403

__all__ = adam.__all__ + clip.__all__ + lr_scheduler.__all__ + optimizer.__all__ + rmsprop.__all__ + sgd.__all__
