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
- `sciml.gp`: Gaussian-process PDE solvers on grids (Kronecker algebra of product kernels).
- `sciml.interop`: Flax (NNX and Linen) models as sciml models and back.
- `sciml.uq`: uncertainty for operators: deep ensembles as one vmapped model, split-conformal
  prediction bands and their calibration.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

# The subpackages are imported on first use (`sciml.data`, `import sciml.pinn`, `from sciml
# import train`): `import sciml` and the command line's start-up (`sciml --help`, a config
# error) then load neither JAX nor Flax, diffrax or matplotlib, and `sciml run` only what it
# uses. Type checkers and the API docs see the eager imports below.
_SUBPACKAGES = (
    "data",
    "derivatives",
    "fields",
    "gp",
    "interop",
    "operators",
    "pinn",
    "train",
    "uq",
)

if TYPE_CHECKING:
    from . import data as data
    from . import derivatives as derivatives
    from . import fields as fields
    from . import gp as gp
    from . import interop as interop
    from . import operators as operators
    from . import pinn as pinn
    from . import train as train
    from . import uq as uq
    from ._export import export_model as export_model


def __getattr__(name: str):
    if name == "export_model":  # needs JAX: imported on first use too
        return importlib.import_module(f"{__name__}._export").export_model
    if name in _SUBPACKAGES:
        # Importing a submodule also binds it as an attribute of this package, so this
        # runs once per subpackage.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(run_dir):
    """The trained model of a `sciml run` run directory.

    Operator runs: the best model, normalisers included, acting on one sample
    `(channels, *spatial)` (batch it with `jax.vmap`). PINN runs: the trained field, a
    function of one point (time last), rebuilt from the run's config and problem module;
    with unknowns it is a `sciml.pinn.Parameterized` (`model.parameters["nu"]`). A run in
    double precision turns on `jax_enable_x64`.

    **Arguments:**

    - `run_dir`: a directory written by `sciml run`.

    **Returns:**

    The model, an Equinox module. Raises `ValueError` with a one-line message for a directory
    that holds no finished run, or one whose files (or problem module) were changed since.
    """
    from ._app.operator_run import load_trained_model

    return load_trained_model(run_dir)[0]


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES, "export_model"})


try:
    __version__ = version("sciml")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
