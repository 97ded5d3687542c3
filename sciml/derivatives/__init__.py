"""Taylor-mode derivative operators and stochastic estimators of them, and first-order
helpers (`partial`, `gradient`, `jacobian`, `divergence`) by forward mode.

The second-order and stochastic operators take a scalar field
`f: Float[Array, "d"] -> Float[Array, ""]` and one point `x`; batch over points with `jax.vmap`,
differentiate with respect to parameters closed over by `f` with `jax.grad`.
"""

from ._baselines import hte_laplacian as hte_laplacian
from ._baselines import sdgd_laplacian as sdgd_laplacian
from ._exact import biharmonic as biharmonic
from ._exact import differential_operator as differential_operator
from ._exact import divergence as divergence
from ._exact import hessian_diagonal as hessian_diagonal
from ._exact import laplacian as laplacian
from ._first_order import gradient as gradient
from ._first_order import jacobian as jacobian
from ._first_order import partial as partial
from ._forward_laplacian import forward_laplacian as forward_laplacian
from ._stochastic import stde_biharmonic as stde_biharmonic
from ._stochastic import stde_diagonal as stde_diagonal
from ._stochastic import stde_laplacian as stde_laplacian
from ._taylor import taylor_derivative as taylor_derivative
