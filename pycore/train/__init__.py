"""Training: fit() with progress and callbacks, truncated BPTT helpers, character-model training."""
from . import callbacks, tbptt, text
from . import fit as _fit_module  # not `fit`: that name is the function, star-imported below

__all__ = callbacks.__all__ + _fit_module.__all__ + tbptt.__all__ + text.__all__

from .callbacks import *  # noqa: F401,F403,E402
from .fit import *  # noqa: F401,F403,E402
from .tbptt import *  # noqa: F401,F403,E402
from .text import *  # noqa: F401,F403,E402
