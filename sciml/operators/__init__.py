"""Neural operators: models that map functions on a grid to functions on the same grid."""

from ._base import AbstractOperator as AbstractOperator
from ._fno import FNO as FNO
from ._mgno import MgNO as MgNO
from ._spectral import SpectralConv as SpectralConv
from ._time import Autoregressive as Autoregressive
from ._time import SpaceTime as SpaceTime
