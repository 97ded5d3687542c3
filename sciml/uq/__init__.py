"""Uncertainty and constraints for operator predictions."""

from ._conservation import LinearConstraint as LinearConstraint
from ._conservation import LowRankCovariance as LowRankCovariance
from ._conservation import conserve as conserve
from ._conservation import conserve_samples as conserve_samples
from ._conservation import ensemble_covariance as ensemble_covariance
from ._conservation import integral_constraint as integral_constraint
from ._conservation import mass_balance as mass_balance
from ._conservation import quadrature_weights as quadrature_weights
