"""Layers with forward and backward, with PyTorch's names, arguments and state_dict layouts."""
from . import activation, container, conv, dropout, embedding, linear, loss, module, normalization, pooling, rnn
from . import init as init  # pycore.nn.init, as torch.nn.init: a namespace, not star-imported
from .activation import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403

__all__ = (activation.__all__ + container.__all__ + conv.__all__ + dropout.__all__ + embedding.__all__ + linear.__all__
           + loss.__all__ + module.__all__ + normalization.__all__ + pooling.__all__ + rnn.__all__)
