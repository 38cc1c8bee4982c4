"""Training: fit() with progress and callbacks, truncated BPTT helpers, character-model training."""
from . import callbacks, fit, tbptt, text

# computed before the star-imports, which rebind the name `fit` from the module to the function
__all__ = callbacks.__all__ + fit.__all__ + tbptt.__all__ + text.__all__

from .callbacks import *  # noqa: F401,F403,E402
from .fit import *  # type: ignore[no-redef]  # noqa: F401,F403,E402  (rebinds `fit` on purpose)
from .tbptt import *  # noqa: F401,F403,E402
from .text import *  # noqa: F401,F403,E402
