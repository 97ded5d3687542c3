"""Physics-informed training: state a PDE in a few lines, solve it with any coordinate model.

- Domains and samplers: `Box`, `Ball`, `SpaceTime` (uniform, Sobol, Latin hypercube, grids);
  `Polygon`, `Disk`, `Union`, `Intersection`, `Difference`, `PointCloud`.
- Conditions as soft loss terms: `Dirichlet`, `Neumann`, `Robin`, `BoundaryOperator`,
  `Periodic`, `Initial`, and measurements `Observations`; hard ones through the output ansatz
  `HardConstraint`.
- Inverse problems: `Parameterized` carries named trainable PDE unknowns beside the field.
- `Problem`: residual + domain + conditions (+ exact or reference solution), with named loss
  terms and causal weighting.
- Training pieces: `grad_norm_weights`, `rad_resample`, `causal_loss`, energy natural gradient
  (`natural_gradient_step`, `NaturalGradient`), and `solve` (Adam or natural gradient, then
  L-BFGS, checkpoints, metrics and plots through `sciml.train`).
- Diagnostics: `gradient_alignment` (cosines and the alignment score of the loss terms'
  gradients) and `alignment_record` (its metric entries).
"""

from . import benchmarks as benchmarks
from ._adaptive import grad_norm_weights as grad_norm_weights
from ._adaptive import rad_resample as rad_resample
from ._alignment import alignment_record as alignment_record
from ._alignment import gradient_alignment as gradient_alignment
from ._ansatz import HardConstraint as HardConstraint
from ._conditions import AbstractCondition as AbstractCondition
from ._conditions import AbstractPointwiseCondition as AbstractPointwiseCondition
from ._conditions import BoundaryOperator as BoundaryOperator
from ._conditions import Dirichlet as Dirichlet
from ._conditions import Initial as Initial
from ._conditions import Neumann as Neumann
from ._conditions import Periodic as Periodic
from ._conditions import Robin as Robin
from ._domain import AbstractDomain as AbstractDomain
from ._domain import Ball as Ball
from ._domain import Box as Box
from ._domain import SpaceTime as SpaceTime
from ._geometry import Difference as Difference
from ._geometry import Disk as Disk
from ._geometry import Intersection as Intersection
from ._geometry import PointCloud as PointCloud
from ._geometry import Polygon as Polygon
from ._geometry import Union as Union
from ._natural_gradient import NaturalGradient as NaturalGradient
from ._natural_gradient import natural_gradient_step as natural_gradient_step
from ._observations import Observations as Observations
from ._parameterized import Parameterized as Parameterized
from ._problem import Problem as Problem
from ._problem import causal_loss as causal_loss
from ._solve import relative_error as relative_error
from ._solve import solve as solve
