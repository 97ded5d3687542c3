"""Uncertainty and constraint tools for operators.

- Deep ensembles held as one vmapped model (`Ensemble`) and trained by one compiled step
  (`ensemble_loss`, `per_member_data`, `ensemble_optimizer`, with `sciml.train.fit`).
- Split-conformal prediction bands per grid point (`calibrate`, `ConformalBands`), their
  empirical `coverage` and calibration curves.
- Conservation constraints on predictions (ProbConserv): `conserve` projects a prediction
  and its covariance onto `LinearConstraint`s such as `integral_constraint`.
"""

from ..train import plot_calibration as plot_calibration
from ._conformal import ConformalBands as ConformalBands
from ._conformal import calibrate as calibrate
from ._conformal import calibration_curve as calibration_curve
from ._conformal import conformal_quantile as conformal_quantile
from ._conformal import conformity_scores as conformity_scores
from ._conformal import coverage as coverage
from ._conformal import min_calibration as min_calibration
from ._conformal import quantile_rank as quantile_rank
from ._conservation import LinearConstraint as LinearConstraint
from ._conservation import LowRankCovariance as LowRankCovariance
from ._conservation import conserve as conserve
from ._conservation import conserve_samples as conserve_samples
from ._conservation import ensemble_covariance as ensemble_covariance
from ._conservation import integral_constraint as integral_constraint
from ._conservation import mass_balance as mass_balance
from ._conservation import quadrature_weights as quadrature_weights
from ._ensemble import Ensemble as Ensemble
from ._ensemble import ensemble_loss as ensemble_loss
from ._ensemble import ensemble_metric as ensemble_metric
from ._ensemble import ensemble_optimizer as ensemble_optimizer
from ._ensemble import member_orders as member_orders
from ._ensemble import per_member_data as per_member_data
