"""Darcy flow -div(a grad u) = f on (0, 1)^2 with u = 0 on the boundary."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ..._validate import ArgumentError
from .._grf import dst1


def default_rtol(dtype) -> float:
    """The default CG tolerance of [`darcy_solve`][] in `dtype`."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


def _face_coefficients(a):
    # Face coefficients are the arithmetic mean of the two adjacent nodes (as in the FNO
    # generator). Only faces adjacent to at least one interior node enter the stencil.
    ax = 0.5 * (a[1:, 1:-1] + a[:-1, 1:-1])  # (s - 1, n): between nodes (i, j) and (i + 1, j)
    ay = 0.5 * (a[1:-1, 1:] + a[1:-1, :-1])  # (n, s - 1): between nodes (i, j) and (i, j + 1)
    return ax, ay


def _apply_operator(ax, ay, h, u):
    # 5-point conservative stencil -div(a grad u) on the interior, u = 0 on the boundary.
    up = jnp.pad(u, 1)
    fx = ax * (up[1:, 1:-1] - up[:-1, 1:-1])
    fy = ay * (up[1:-1, 1:] - up[1:-1, :-1])
    return -((fx[1:] - fx[:-1]) + (fy[:, 1:] - fy[:, :-1])) / h**2


def _make_preconditioner(n: int, h: float, abar, dtype):
    # The exact inverse of abar * (-Lap_h) (5-point, Dirichlet), diagonalised by the DST-I:
    # -Lap_h = S diag(lam) S (2 / (n + 1))^2 with S the (symmetric) sine matrix, S S = (n+1)/2 I,
    # lam_ij = (4 / h^2) (sin^2(pi i h / 2) + sin^2(pi j h / 2)). For a with values in
    # [a_min, a_max], the spectrum of the preconditioned operator lies in
    # [a_min / abar, a_max / abar], so CG needs O(sqrt(a_max / a_min)) iterations at any h.
    k = np.arange(1, n + 1)
    s1 = (4.0 / h**2) * np.sin(0.5 * np.pi * k * h) ** 2
    inv_lam = jnp.asarray((2.0 / (n + 1)) ** 2 / (s1[:, None] + s1[None, :]), dtype)
    inv_diag = inv_lam / abar

    def apply(r):
        return dst1(dst1(dst1(dst1(r, 0), 1) * inv_diag, 0), 1)

    return apply


def _check_inputs(a, f):
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ArgumentError(
            f"`a` must be a square 2-D array of node values of size at least 3 x 3, "
            f"got shape {a.shape}.",
            argument="a",
        )
    dtype = jnp.result_type(a, f)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    f = jnp.asarray(f, dtype)
    if f.ndim != 0 and f.shape != a.shape:
        raise ArgumentError(
            f"`f` must be a scalar or have the shape of `a` {a.shape}, got shape {f.shape}.",
            argument="f",
        )
    return a.astype(dtype), f, dtype


def darcy_solve_with_stats(
    a: Float[ArrayLike, "s s"],
    f: float | Float[ArrayLike, ""] | Float[ArrayLike, "s s"] = 1.0,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 10_000,
) -> tuple[Float[Array, "s s"], Int[Array, ""]]:
    """As [`darcy_solve`][], but also returns the number of CG iterations taken."""
    a, f, dtype = _check_inputs(a, f)
    if rtol is None:
        rtol = default_rtol(dtype)
    if atol is None:
        atol = rtol
    return _solve(a, f, float(rtol), float(atol), int(max_steps))


# Compiled once per shape/dtype/tolerances, so that eager calls do not re-trace lineax's CG.
@eqx.filter_jit
def _solve(a, f, rtol, atol, max_steps):
    dtype = a.dtype
    s = a.shape[0]
    n = s - 2
    h = 1.0 / (s - 1)
    a = eqx.error_if(
        a, jnp.logical_not(jnp.all(a > 0)), "`a` must be positive and finite at every node."
    )
    ax, ay = _face_coefficients(a)
    b = jnp.broadcast_to(f, a.shape)[1:-1, 1:-1]
    # Solve for u / max|f| so that the tolerances are relative to the size of f and a right-hand
    # side with zeros is handled (lineax's CG tests |r_i| <= atol + rtol |b_i| per node). The
    # scale is a constant for differentiation: u = c A^-1 (b / c) for any c.
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(b)))
    scale = jnp.where(scale > 0, scale, 1)
    # Preconditioner abar (-Lap_h) with abar = min(a) / c. Since every face coefficient is
    # >= min(a), the preconditioned spectrum is >= c. Scaling the preconditioner by a power of
    # two leaves the CG iterates unchanged, but lineax's CG returns NaN when a step's
    # p^T A p < 100 * rcond * r^T M^-1 r, rcond = 2 eps n^2 (about 4 in float32 at s = 421),
    # i.e. when the preconditioned spectrum reaches below 100 rcond; c keeps it 10x above.
    rcond = 2 * jnp.finfo(dtype).eps * n**2
    c = 2.0 ** max(0, int(np.ceil(np.log2(1000 * rcond))))
    abar = jax.lax.stop_gradient(jnp.min(a)) / c

    structure = jax.ShapeDtypeStruct((n, n), dtype)
    tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
    operator = lx.FunctionLinearOperator(lambda u: _apply_operator(ax, ay, h, u), structure, tags)
    precond = lx.FunctionLinearOperator(_make_preconditioner(n, h, abar, dtype), structure, tags)
    # stabilise_every=None: the residual is only updated recursively, as in SciPy's and MATLAB's
    # pcg. The recomputed residual A y - b stagnates at a rounding floor ~ eps max|a| max|u| / h^2
    # (~1e-10 relative in float64, ~1e-3 in float32 at s = 421) that would stall the stopping
    # test, while the iterates keep converging to the attainable accuracy of u.
    solver = lx.CG(rtol=rtol, atol=atol, max_steps=max_steps, stabilise_every=None)
    sol = lx.linear_solve(operator, b / scale, solver, options={"preconditioner": precond})
    return jnp.pad(scale * sol.value, 1), sol.stats["num_steps"]


def darcy_solve(
    a: Float[ArrayLike, "s s"],
    f: float | Float[ArrayLike, ""] | Float[ArrayLike, "s s"] = 1.0,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 10_000,
) -> Float[Array, "s s"]:
    r"""Solves $-\nabla \cdot (a \nabla u) = f$ on $(0, 1)^2$ with $u = 0$ on the boundary.

    Second-order finite differences on the node grid $x_i = i h$, $h = 1 / (s - 1)$,
    $i = 0, \dots, s - 1$ (boundary included): the conservative 5-point stencil on the
    $(s - 2)^2$ interior nodes,
    $-[a_{i+1/2,j} (u_{i+1,j} - u_{ij}) - a_{i-1/2,j} (u_{ij} - u_{i-1,j}) + (\text{same in } j)]
    / h^2 = f_{ij}$, with face coefficients $a_{i+1/2,j} = (a_{ij} + a_{i+1,j}) / 2$ (as in the
    FNO data generator). The symmetric positive definite system is solved matrix-free with
    conjugate gradients (`lineax.CG`) preconditioned by the exact inverse of
    $\bar a (-\Delta_h)$, $\bar a \propto \min a$, applied with fast sine transforms (DST-I
    via FFT); the iteration count depends on the contrast $\max a / \min a$ but not on $s$
    (for the FNO coefficients with values 3 and 12: about 17 in float32, 27 in float64).

    Differentiable in `a` and `f` by implicit differentiation (one more CG solve with the same
    operator per reverse pass; the iterations are not unrolled). Works under `jax.jit` and
    `jax.vmap`.

    **Arguments:**

    - `a`: coefficient at the $s \times s$ nodes, $s \ge 3$; must be positive (checked with
      `equinox.error_if`). Boundary values enter through the face coefficients.
    - `f`: right-hand side, a scalar or an $s \times s$ array (boundary values unused).
    - `rtol`, `atol`: CG stopping tolerances for the system scaled by $1 / \max |f|$: stop once
      $|r_i| \le$ `atol` $+$ `rtol` $|f_i| / \max|f|$ at every node (and likewise for the last
      update of $u / \max|f|$), where $r$ is CG's recursively updated residual. Defaults:
      `rtol = 1e-10` in float64 (measured error ~1e-14 relative to a direct solve), `1e-5` in
      float32 (error a few 1e-7 relative, the float32 rounding floor); `atol = rtol`.
    - `max_steps`: maximal number of CG iterations; exceeding it raises an error.

    **Returns:**

    `u` of shape $(s, s)$ in the floating dtype of `a` and `f` combined, zero on the boundary.
    """
    return darcy_solve_with_stats(a, f, rtol=rtol, atol=atol, max_steps=max_steps)[0]
