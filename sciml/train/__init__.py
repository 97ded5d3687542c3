"""Training: losses, normalisers, batching, `train_step`, checkpoints, plots and `fit`.

Every piece is usable from a user's own JAX loop; `fit` is built only from them.
"""

from ._batching import batches as batches
from ._batching import num_batches as num_batches
from ._checkpoint import CorruptCheckpointError as CorruptCheckpointError
from ._checkpoint import latest_checkpoint as latest_checkpoint
from ._checkpoint import load_model_file as load_model_file
from ._checkpoint import restore_checkpoint as restore_checkpoint
from ._checkpoint import restore_newest_valid as restore_newest_valid
from ._checkpoint import save_checkpoint as save_checkpoint
from ._checkpoint import save_model_file as save_model_file
from ._fit import fit as fit
from ._losses import batch_loss as batch_loss
from ._losses import h1_loss as h1_loss
from ._losses import mse as mse
from ._losses import relative_l2 as relative_l2
from ._metrics import PDEBENCH_METRICS as PDEBENCH_METRICS
from ._metrics import brmse as brmse
from ._metrics import crmse as crmse
from ._metrics import fourier_rmse as fourier_rmse
from ._metrics import frmse_high as frmse_high
from ._metrics import frmse_low as frmse_low
from ._metrics import frmse_mid as frmse_mid
from ._metrics import max_error as max_error
from ._metrics import nrmse as nrmse
from ._metrics import rmse as rmse
from ._normalize import NonTrainable as NonTrainable
from ._normalize import Normalized as Normalized
from ._normalize import UnitGaussianNormalizer as UnitGaussianNormalizer
from ._normalize import trainable_filter as trainable_filter
from ._plots import plot_calibration as plot_calibration
from ._plots import plot_history as plot_history
from ._plots import plot_predictions as plot_predictions
from ._plots import plot_solution as plot_solution
from ._sharding import data_size as data_size
from ._sharding import is_writer as is_writer
from ._sharding import make_mesh as make_mesh
from ._sharding import replicate as replicate
from ._sharding import shard_batch as shard_batch
from ._sharding import shard_params as shard_params
from ._soap import soap as soap
from ._step import GuardState as GuardState
from ._step import NonFiniteError as NonFiniteError
from ._step import evaluate as evaluate
from ._step import init_guard as init_guard
from ._step import init_optimizer as init_optimizer
from ._step import train_step as train_step
from ._trackers import TRACKERS as TRACKERS
from ._trackers import AbstractTracker as AbstractTracker
from ._trackers import MissingTrackerError as MissingTrackerError
from ._trackers import MlflowTracker as MlflowTracker
from ._trackers import TensorBoardTracker as TensorBoardTracker
from ._trackers import WandbTracker as WandbTracker
from ._trackers import chain_callbacks as chain_callbacks
from ._trackers import flatten_config as flatten_config
