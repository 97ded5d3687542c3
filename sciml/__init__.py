"""sciml: differentiable scientific machine learning in JAX.

- `sciml.operators`: neural operators (FNO, MgNO, DeepONet) acting on one sample, channels first.
- `sciml.fields`: coordinate models for physics-informed training (MLP, PIG).
- `sciml.pinn`: PDE problems (domains, samplers, conditions), loss weighting, resampling and
  `solve`; `sciml.pinn.benchmarks` holds the literature's benchmark problems.
- `sciml.derivatives`: Taylor-mode differential operators (Laplacian, biharmonic, any mixed
  partials) and the stochastic estimators (STDE) with their backward-mode baselines.
- `sciml.data`: Gaussian random fields, differentiable solvers (Darcy, Burgers, Navier-Stokes),
  dataset recipes and files.
- `sciml.train`: losses, normalizers, batching, `train_step`, checkpoints, plots, `fit` and
  multi-device meshes (`make_mesh`, `shard_batch`).
- `sciml.interop`: Flax (NNX and Linen) models as sciml models and back.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data as data
from . import derivatives as derivatives
from . import fields as fields
from . import interop as interop
from . import operators as operators
from . import pinn as pinn
from . import train as train

try:
    __version__ = version("sciml")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
