"""Energy natural gradient (Gauss-Newton) steps for PINNs."""

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import lineax as lx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from ..train import trainable_filter
from ._conditions import AbstractPointwiseCondition
from ._problem import RESIDUAL, Problem, causal_loss

SOLVERS = ("auto", "dense", "gram", "cg")
_ETAS = tuple(2.0**-k for k in range(11))


def _residual_scales(problem: Problem, model, points, weights) -> dict[str, Array]:
    """Per-point factors `c_i` with `loss_t = sum_i c_i |r_t,i|^2` (held at the current
    parameters): `w_t / n_t`, or for a causally weighted residual the derivative of its loss by
    each squared residual (the causal weights are held constant there, so the term is exactly
    this weighted sum)."""
    scales = {}
    for name in problem.terms:
        n = points[name].shape[0]
        if name == RESIDUAL and problem.causal_chunks is not None:
            x = points[name]
            r = problem.residuals(model, x)
            sq = jnp.sum(jnp.reshape(r, (r.shape[0], -1)) ** 2, axis=1)
            domain = problem.domain
            loss = lambda s, x=x, domain=domain: causal_loss(
                s, x[:, -1], domain.t0, domain.t1, problem.causal_chunks, problem.causal_tolerance
            )[0]
            per_point = jax.grad(loss)(jax.lax.stop_gradient(sq))
        else:
            per_point = jnp.full((n,), 1 / n, dtype=points[name].dtype)
        scales[name] = weights[name] * per_point
    return scales


def _residual_vector(problem: Problem, model, points, scales) -> Array:
    """All residuals of all terms, each times the square root of its factor, as one vector:
    its squared norm is the loss."""
    parts = []
    for name in problem.terms:
        if name == RESIDUAL:
            r = problem.residuals(model, points[name])
        else:
            r = problem.condition_residuals(name, model, points[name])
        r = jnp.reshape(r, (r.shape[0], -1))
        parts.append((r * jnp.sqrt(scales[name])[:, None]).reshape(-1))
    return jnp.concatenate(parts)


def _columns(fn, theta: Array, chunk: int) -> Array:
    """The Jacobian of `fn` at `theta` column by column in forward mode: one linearisation,
    then the products with `chunk` unit vectors at a time."""
    jvp = jax.linearize(fn, theta)[1]
    p = theta.size
    column = lambda i: jvp(jax.nn.one_hot(i, p, dtype=theta.dtype))
    return jax.lax.map(column, jnp.arange(p), batch_size=min(chunk, p)).T


def _jacobian(problem: Problem, build, theta: Array, points, scales, chunk: int) -> Array:
    """`J = dr/dtheta` of `_residual_vector`, term by term.

    A residual of one point depends on that point only, so the rows of the PDE residual and
    of pointwise conditions are per-point gradients (`jax.jacrev` of one point's residual,
    `chunk` points at a time): the work is that of `n` single-point gradients. Batched
    reverse or forward mode over the whole residual vector (`jax.jacrev`, `jax.jacfwd`)
    would instead push every cotangent (every tangent) through all `n` points: `n` (`p`)
    times a full residual evaluation, which for residuals of derivatives is 100-400x slower
    here and, all at once, asks for tens of GB (Burgers: 4,400 residuals, 2,200 parameters,
    60 GB). Other conditions (`Observations`, one's own non-pointwise ones) get forward-mode
    columns, `chunk` at a time."""
    blocks = []
    for name in problem.terms:
        x, root = points[name], jnp.sqrt(scales[name])
        condition = None if name == RESIDUAL else problem.conditions[name]
        if condition is None or isinstance(condition, AbstractPointwiseCondition):
            if condition is None:
                one = lambda model, q: problem.residual(model, q)
            else:
                one = lambda model, q, c=condition: c.residual(model, q, problem.domain)
            row = lambda q, one=one: jax.jacrev(lambda t: jnp.reshape(one(build(t), q), (-1,)))(
                theta
            )
            rows = jax.lax.map(row, x, batch_size=min(chunk, x.shape[0]))  # (n, k, p)
            blocks.append((rows * root[:, None, None]).reshape(-1, theta.size))
        else:

            def term(t, name=name, x=x, root=root):
                r = problem.condition_residuals(name, build(t), x)
                return (jnp.reshape(r, (r.shape[0], -1)) * root[:, None]).reshape(-1)

            blocks.append(_columns(term, theta, chunk))
    return jnp.concatenate(blocks)


def _damped_lstsq(jac: Array, r: Array, damping: Array) -> Array:
    """`(J^T J + damping I)^+ J^T r` from the SVD `J = U S V^T`: `V S (S^2 + damping)^+ U^T r`,
    singular values below `max(n, p) eps s_max` counting as zero (the least-squares minimiser
    of smallest norm for `damping = 0`, as `numpy.linalg.lstsq`). Working on `J` itself rather
    than on the Gramian keeps its condition number, not its square."""
    u, s, vt = jnp.linalg.svd(jac, full_matrices=False)
    cutoff = max(jac.shape) * jnp.finfo(jac.dtype).eps * s[0]
    keep = s > cutoff
    factors = jnp.where(keep, s / jnp.where(keep, s**2 + damping, 1), 0)
    return vt.T @ (factors * (u.T @ r))


def _damped_gram_solve(jac: Array, r: Array, damping: Array) -> Array:
    """The same direction as `_damped_lstsq` from the smaller Gram matrix, `J J^T` (`m <= p`:
    `d = J^T (J J^T + damping I)^-1 r`) or `J^T J`: one matrix product and a Cholesky
    factorisation instead of an SVD of `J` (4x faster on a 1,280 x 2,241 Jacobian here),
    at the price of squaring the condition number. The damping is raised to at least
    `n eps max(diag)` so that the factorisation exists in rounding (a Tikhonov term where the
    SVD would cut singular values below ~sqrt(eps) s_max); should it still fail (a
    non-finite factor), the eigendecomposition's pseudo-inverse takes over."""
    m, p = jac.shape
    small = m <= p
    gram = jac @ jac.T if small else jac.T @ jac
    rhs = r if small else jac.T @ r
    n = gram.shape[0]
    eps = jnp.finfo(jac.dtype).eps
    shift = jnp.maximum(damping, n * eps * jnp.max(jnp.diag(gram)))
    factor = jnp.linalg.cholesky(gram + shift * jnp.eye(n, dtype=gram.dtype))
    solution = jax.scipy.linalg.cho_solve((factor, True), rhs)

    def pseudo_inverse():
        w, vectors = jnp.linalg.eigh(gram)
        keep = w > n * eps * w[-1]
        factors = jnp.where(keep, 1 / jnp.where(keep, w + damping, 1), 0)
        return vectors @ (factors * (vectors.T @ rhs))

    solution = jax.lax.cond(jnp.all(jnp.isfinite(solution)), lambda: solution, pseudo_inverse)
    return jac.T @ solution if small else solution


class NaturalGradient(eqx.Module):
    """Energy natural gradient descent (Müller & Zeinhofer 2023), i.e. damped Gauss-Newton,
    for a `Problem`'s least-squares loss, with a grid line search.

    The loss `sum_t w_t mean_i |r_t,i(theta)|^2` is `|r(theta)|^2` for the vector `r` of all
    residuals (vector residuals flattened) scaled by `sqrt(w_t / n_t)`; with `J = dr/dtheta`
    (`theta`: the trainable leaves, flattened) a step solves

        (J^T J + damping I) d = J^T r        (half the loss gradient)

    and sets `theta <- theta - eta d` with the `eta` of `etas` that gives the smallest loss
    (all candidates evaluated at once, `vmap`ped), as in the paper. A step that lowers the
    loss for no candidate is not applied (`eta = 0`). For a loss quadratic in `theta` (a
    model linear in its parameters, a linear PDE), `damping = 0` and `eta = 1` reach the
    least-squares minimiser in one step.

    **Solvers.** `"dense"` and `"gram"` form `J` (row by row: the gradients of single
    points' residuals, `jacobian_chunk` points per batch). `"dense"` solves by the SVD of `J`
    as a damped pseudo-inverse: rank-deficient `J` (more parameters than residuals, as usual)
    are fine also with `damping = 0`, and the Gramian's squared condition number is never
    formed, so singular values down to ~eps s_max count. `"gram"` solves with the Cholesky
    factor of the smaller of `J J^T`, `J^T J` (the paper's Gramian), damped by at least
    `n eps max(diag)`: 4x faster than the SVD on a 1,280 x 2,241 Jacobian here, singular
    values below ~sqrt(eps) s_max lost; the same steps in practice (Poisson, 150 steps: the
    same losses to 3 digits). `"cg"` never forms `J`: conjugate gradients (`lineax.CG`) on
    the products `(J^T J + damping I) v` (`jax.linearize` and its transpose), for networks
    whose `J` would not fit; `max_cg_steps` then also regularises. `"auto"` is `"gram"` up
    to `dense_limit` trainable parameters, `"cg"` above.

    **Damping.** `damping` is the first step's; with `adaptive` it follows the
    Levenberg-Marquardt rule on the gain ratio `rho = (L(theta) - L(theta')) / (|r|^2 -
    |r - eta J d|^2)` (actual over Gauss-Newton-predicted decrease at the `eta` taken):
    divided by 3 when `rho > 3/4`, doubled when `rho < 1/4`, quadrupled after a rejected
    step, and never below the dtype's epsilon then. Without it, it stays fixed.
    From a random initialisation the undamped Gauss-Newton step is far too long (the Gramian
    spans many decades); the adaptation starts damped and lets the damping fall as the model
    enters the region where Gauss-Newton converges fast.

    **Arguments:**

    - `damping`: the (first) damping `>= 0`.
    - `adaptive`: adapt the damping (Levenberg-Marquardt) or keep it fixed.
    - `solver`: `"auto"`, `"dense"`, `"gram"` or `"cg"`.
    - `etas`: the candidate step sizes (default `2^-k`, `k = 0..10`).
    - `dense_limit`: the largest parameter count `"auto"` solves densely.
    - `max_cg_steps`, `cg_rtol`: CG's iteration limit and relative tolerance (it stops at
        either; the last iterate is used).
    - `jacobian_chunk`: points per batch of the dense solver's Jacobian (per-point gradients;
        for a condition that is not pointwise, columns per forward-mode batch).

    **References:** J. Müller and M. Zeinhofer, "Achieving High Accuracy with PINNs via
    Energy Natural Gradients", ICML 2023.
    """

    damping: float = eqx.field(static=True, default=1e-3)
    adaptive: bool = eqx.field(static=True, default=True)
    solver: str = eqx.field(static=True, default="auto")
    etas: tuple[float, ...] = eqx.field(static=True, default=_ETAS)
    dense_limit: int = eqx.field(static=True, default=4096)
    max_cg_steps: int = eqx.field(static=True, default=200)
    cg_rtol: float = eqx.field(static=True, default=1e-10)
    jacobian_chunk: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(
                f"`NaturalGradient`: `solver` must be one of {SOLVERS}, got {self.solver!r}."
            )
        if not self.damping >= 0:
            raise ValueError(f"`NaturalGradient`: `damping` must be >= 0, got {self.damping!r}.")
        if not self.etas or not all(e > 0 for e in self.etas):
            raise ValueError(
                f"`NaturalGradient`: `etas` must be positive step sizes, got {self.etas!r}."
            )
        for name in ("dense_limit", "max_cg_steps", "jacobian_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"`NaturalGradient`: `{name}` must be >= 1.")

    def init(self, dtype=None) -> Array:
        """The state of a run: the damping of its first step, a scalar array."""
        return jnp.asarray(self.damping, jnp.zeros((), dtype).dtype)

    def step(
        self,
        problem: Problem,
        model: PyTree,
        points: Mapping[str, Array],
        weights: Mapping[str, Array],
        damping: Array,
        *,
        filter_spec: PyTree[bool] | None = None,
        eta_factor: Array | float | None = None,
    ) -> tuple[PyTree, dict[str, Array]]:
        """One natural-gradient step (traceable; `natural_gradient_step` is a jitted form).

        **Arguments:**

        - `problem`, `model`, `points`, `weights`: as for `Problem.loss`.
        - `damping`: this step's damping (`init()`, then the last step's `info["damping"]`).
        - `filter_spec`: trainable leaves (default `trainable_filter(model)`).
        - `eta_factor`: a factor on every candidate step size (`solve` lowers it after a
            rollback).

        **Returns:** `(model, info)`: the updated model and a dict of arrays: `loss` (before),
        `new_loss` (after), `eta` (the step size taken, 0 for a rejected step), `damping` (the
        next step's), `direction` (`d`, flattened) and `cg_steps` (0 for the dense solver).
        """
        spec = trainable_filter(model) if filter_spec is None else filter_spec
        params, static = eqx.partition(model, spec)
        theta, unravel = ravel_pytree(params)
        build = lambda t: eqx.combine(unravel(t), static)
        scales = _residual_scales(problem, model, points, weights)
        residual_fn = lambda t: _residual_vector(problem, build(t), points, scales)
        damping = jnp.asarray(damping, theta.dtype)
        solver = self.solver
        if solver == "auto":
            solver = "gram" if theta.size <= self.dense_limit else "cg"
        if solver in ("dense", "gram"):
            r = residual_fn(theta)
            jac = _jacobian(problem, build, theta, points, scales, self.jacobian_chunk)
            solve = _damped_lstsq if solver == "dense" else _damped_gram_solve
            direction = solve(jac, r, damping)
            jvp = lambda v: jac @ v
            cg_steps = jnp.zeros((), jnp.int32)
        else:
            r, jvp = jax.linearize(residual_fn, theta)
            vjp = jax.linear_transpose(jvp, theta)
            gram = lx.FunctionLinearOperator(
                lambda v: vjp(jvp(v))[0] + damping * v,
                jax.ShapeDtypeStruct(theta.shape, theta.dtype),
                tags=lx.positive_semidefinite_tag,
            )
            cg = lx.CG(rtol=self.cg_rtol, atol=0.0, max_steps=self.max_cg_steps)
            solution = lx.linear_solve(gram, vjp(r)[0], cg, throw=False)
            direction = solution.value
            cg_steps = jnp.asarray(solution.stats["num_steps"], jnp.int32)
        loss = jnp.sum(r**2)
        etas = jnp.asarray(self.etas, theta.dtype)
        if eta_factor is not None:
            etas = etas * jnp.asarray(eta_factor, theta.dtype)
        trial = lambda eta: problem.loss(build(theta - eta * direction), points, weights)
        losses = jax.vmap(trial)(etas)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        accept = losses[best] < loss
        eta = jnp.where(accept, etas[best], 0)
        new_model = build(theta - eta * direction)
        if self.adaptive:
            predicted = loss - jnp.sum((r - etas[best] * jvp(direction)) ** 2)
            rho = (loss - losses[best]) / predicted
            raised = jnp.maximum(damping * jnp.where(accept, 2, 4), jnp.finfo(theta.dtype).eps)
            damping = jnp.where(
                ~accept | (rho < 0.25), raised, jnp.where(rho > 0.75, damping / 3, damping)
            )
        info = {
            "loss": loss,
            "new_loss": jnp.where(accept, losses[best], loss),
            "eta": eta,
            "damping": damping,
            "direction": direction,
            "cg_steps": cg_steps,
        }
        return new_model, info


@eqx.filter_jit
def _step(method, problem, model, points, weights, damping, filter_spec):
    return method.step(problem, model, points, weights, damping, filter_spec=filter_spec)


def natural_gradient_step(
    problem: Problem,
    model: PyTree,
    points: Mapping[str, Array],
    weights: Mapping[str, Array],
    *,
    damping: float | Array = 1e-3,
    adaptive: bool = True,
    solver: str = "auto",
    etas: tuple[float, ...] = _ETAS,
    filter_spec: PyTree[bool] | None = None,
    dense_limit: int = 4096,
    max_cg_steps: int = 200,
    cg_rtol: float = 1e-10,
    jacobian_chunk: int = 256,
) -> tuple[PyTree, dict[str, Array]]:
    """One energy natural gradient (Gauss-Newton) step with a grid line search on
    `problem.loss(model, points, weights)`, JIT-compiled, for one's own loop:

        damping = 1e-3
        for _ in range(steps):
            model, info = natural_gradient_step(problem, model, points, weights, damping=damping)
            damping = info["damping"]  # Levenberg-Marquardt adapted

    See `NaturalGradient` for the method, the solvers and the damping.

    **Arguments:**

    - `problem`, `model`, `points` (by term), `weights` (by term): as for `Problem.loss`.
    - `damping`: this step's damping (a float or a scalar array; the same compilation serves
        every value).
    - `adaptive`, `solver`, `etas`, `dense_limit`, `max_cg_steps`, `cg_rtol`,
        `jacobian_chunk`: see `NaturalGradient`.
    - `filter_spec`: trainable leaves (default `trainable_filter(model)`).

    **Returns:** `(model, info)`, `info` a dict of arrays: `loss` before and `new_loss` after
    the step, the step size `eta` taken (0: rejected, the model unchanged), the next step's
    `damping`, the flattened `direction` and `cg_steps`.
    """
    method = NaturalGradient(
        0.0, adaptive, solver, tuple(etas), dense_limit, max_cg_steps, cg_rtol, jacobian_chunk
    )
    return _step(method, problem, model, points, weights, jnp.asarray(damping), filter_spec)
