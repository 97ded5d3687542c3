"""Gaussian-process solvers for PDEs (GP-HM, Fang et al., ICLR 2024), built on Kronecker
algebra: on a grid with a product kernel the covariance is a Kronecker product of small
per-dimension matrices, so products, solves and log-determinants never form the N x N
matrix.

- `SpectralMixture`: GP-HM's kernel of one coordinate (a Gaussian mixture power spectrum),
  with derivatives of any order (Taylor mode) for differential operators.
- `GridGP`, `gp_loss`, `solve_gp`: the GP-HM solver: node values on a tensor grid, the GP
  prior, the PDE residual of a `sciml.pinn.Problem` at every node and its conditions at
  their nodes, trained by Adam (then L-BFGS).
- `kron_matvec`, `kron_solve`, `kron_logdet`: (A_1 x ... x A_d) v, (A_1 x ... x A_d +
  noise I)^-1 v and log det of it, from the factors alone.
"""

from ._kernels import SpectralMixture as SpectralMixture
from ._kronecker import kron_logdet as kron_logdet
from ._kronecker import kron_matvec as kron_matvec
from ._kronecker import kron_solve as kron_solve
from ._solver import GridGP as GridGP
from ._solver import condition_points as condition_points
from ._solver import gauss_newton_values as gauss_newton_values
from ._solver import gp_loss as gp_loss
from ._solver import relative_l2 as relative_l2
from ._solver import solve_gp as solve_gp
