"""Neural operators: models that map functions on a grid to functions on the same grid."""

from ._base import AbstractOperator as AbstractOperator
from ._deeponet import AbstractTrunk as AbstractTrunk
from ._deeponet import DeepONet as DeepONet
from ._deeponet import GridDeepONet as GridDeepONet
from ._deeponet import MLPTrunk as MLPTrunk
from ._deeponet import PODTrunk as PODTrunk
from ._deeponet import grid_coordinates as grid_coordinates
from ._deeponet import pod_basis as pod_basis
from ._fno import FNO as FNO
from ._mgno import MgNO as MgNO
from ._spectral import SpectralConv as SpectralConv
from ._time import Autoregressive as Autoregressive
from ._time import SpaceTimeOperator as SpaceTimeOperator

# The earlier name, kept for existing code; `sciml.pinn.SpaceTime` is the space-time domain.
SpaceTime = SpaceTimeOperator
