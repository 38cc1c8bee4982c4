"""Training: fit() with progress and callbacks, truncated BPTT helpers, character-model training."""
from . import callbacks, fit, tbptt, text
from .callbacks import *  # noqa: F401,F403
from .fit import *  # noqa: F401,F403
from .tbptt import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403

__all__ = callbacks.__all__ + fit.__all__ + tbptt.__all__ + text.__all__
