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
from ._pino import burgers_loss as burgers_loss
from ._pino import burgers_residual as burgers_residual
from ._pino import darcy_boundary as darcy_boundary
from ._pino import darcy_loss as darcy_loss
from ._pino import darcy_residual as darcy_residual
from ._pino import fine_tune as fine_tune
from ._pino import navier_stokes_loss as navier_stokes_loss
from ._pino import navier_stokes_residual as navier_stokes_residual
from ._pino import pino_loss as pino_loss
from ._spectral import SpectralConv as SpectralConv
from ._time import Autoregressive as Autoregressive
from ._time import SpaceTimeOperator as SpaceTimeOperator

# The earlier name, kept for existing code; `sciml.pinn.SpaceTime` is the space-time domain.
SpaceTime = SpaceTimeOperator
