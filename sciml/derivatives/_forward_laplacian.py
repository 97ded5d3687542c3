"""The forward Laplacian (Li et al. 2023): the Laplacian of a scalar field in one forward pass
that carries `(value, Jacobian, Laplacian)` through every operation of the function's jaxpr."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal
from jaxtyping import Array, ArrayLike, Float, Int

from ._taylor import check_chunk_size, check_point, sum_over_chunks


class _Selector:
    """The Jacobian of the input point, or of an elementwise function of it, kept symbolic:
    direction `k` has the single non-zero entry `scale[k]` at coordinate `idx[k]` (all
    coordinates in order when `idx` is None; `scale` None means ones). A linear layer applied
    to the input then costs a copy of (rows of) its weight instead of a matrix product with
    one-hot vectors, and elementwise functions of the input (a boundary factor `1 - |x|^2`, a
    Fourier feature) cost O(d + k) instead of O(k d)."""

    __slots__ = ("idx", "d", "scale")

    def __init__(self, idx: Array | None, d: int, scale: Array | None = None):
        self.idx = idx
        self.d = d
        self.scale = scale

    def dense(self, dtype) -> Array:
        if self.idx is None:
            base = jnp.eye(self.d, dtype=dtype)
        else:
            base = jax.nn.one_hot(self.idx, self.d, dtype=dtype)
        return base if self.scale is None else base * self.scale[:, None].astype(dtype)

    def rows(self, a: Array) -> Array:
        """`J @ a` over the leading axis of `a`: its selected entries, scaled."""
        a = a if self.idx is None else jnp.take(a, self.idx, axis=0)
        if self.scale is None:
            return a
        return a * self.scale.reshape(self.scale.shape + (1,) * (a.ndim - 1)).astype(a.dtype)

    def pick(self, v: ArrayLike) -> Array:
        """The entries of a d-vector at the selected coordinates, one per direction."""
        v = jnp.broadcast_to(v, (self.d,))
        return v if self.idx is None else jnp.take(v, self.idx)

    def scales(self, dtype) -> Array:
        k = self.d if self.idx is None else self.idx.shape[0]
        return jnp.ones((k,), dtype) if self.scale is None else self.scale.astype(dtype)

    def on_grid(self, per_direction: Array) -> Array:
        """`sum_k per_direction[k] e_{idx[k]}`: a d-vector."""
        if self.idx is None:
            return per_direction
        return jnp.zeros((self.d,), per_direction.dtype).at[self.idx].add(per_direction)

    def scaled(self, factor: Array) -> "_Selector":
        """The selector of `diag(g) J`, `factor` the selected entries of `g`."""
        scale = factor if self.scale is None else self.scale * factor
        return _Selector(self.idx, self.d, scale)


class _Triple:
    """A traced quantity that depends on the input: its value, its Jacobian with the direction
    axis first (`(k, *value.shape)`, or a `_Selector`), and its Laplacian (None when it is
    identically zero). Anything else in the interpreter is a constant: independent of the input,
    with zero Jacobian and Laplacian, and costs nothing to differentiate."""

    __slots__ = ("value", "jac", "lap")

    def __init__(self, value: Array, jac: "Array | _Selector", lap: Array | None):
        self.value = value
        self.jac = jac
        self.lap = lap


def _value(v):
    return v.value if isinstance(v, _Triple) else v


def _dense_jac(t: _Triple) -> Array:
    return t.jac.dense(t.value.dtype) if isinstance(t.jac, _Selector) else t.jac


def _jac_to(t: _Triple, ndim: int) -> Array:
    """The dense Jacobian of `t` with singleton axes inserted after the direction axis so that it
    broadcasts against a result of rank `ndim` (lax lets a rank-0 operand meet a rank-n one)."""
    jac = _dense_jac(t)
    missing = ndim - (jac.ndim - 1)
    return jac.reshape(jac.shape[:1] + (1,) * missing + jac.shape[1:]) if missing else jac


def _sq_norm(t: _Triple) -> Array:
    """`sum_k J[k]^2`: the weight of `g''` in the Laplacian of `g(t)`."""
    if isinstance(t.jac, _Selector):
        s = t.jac.scales(t.value.dtype)
        return t.jac.on_grid(s * s)
    return jnp.sum(t.jac * t.jac, axis=0)


def _add_opt(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _scale_opt(c, a):
    return None if c is None or a is None else c * a


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _bind(eqn, args) -> list:
    out = eqn.primitive.bind(*args, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _bind_constant(eqn, args) -> list:
    # As `jax.core.eval_jaxpr` does; `get_bind_params` returned `(subfuns, params)` before
    # JAX 0.7 and returns `params` since.
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = bind_params if isinstance(bind_params, tuple) else ((), bind_params)
    out = eqn.primitive.bind(*subfuns, *args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


# --- elementwise functions of one argument -------------------------------------------------------
#
# y = g(u):  J_y = g'(u) J_u,  L_y = g'(u) L_u + g''(u) sum_k J_u[k]^2.
# Each entry maps (u, y) to (g', g''), written through y where that is cheaper; g'' is
# None where it vanishes identically.


def _unary_rule(derivatives):
    def rule(eqn, invals):
        (u,) = invals
        (y,) = _bind(eqn, [u.value])
        g1, g2 = derivatives(u.value, y, eqn.params)
        if isinstance(u.jac, _Selector):
            jac = u.jac.scaled(u.jac.pick(g1))
        else:
            jac = g1 * u.jac
        lap = _add_opt(_scale_opt(g1, u.lap), None if g2 is None else g2 * _sq_norm(u))
        return [_Triple(y, jac, lap)]

    return rule


def _integer_pow(u, y, params):
    n = params["y"]
    if n == 0:
        return jnp.zeros_like(u), None
    g1 = n * lax.integer_pow(u, n - 1) if n != 1 else jnp.ones_like(u)
    g2 = None if n in (0, 1) else n * (n - 1) * (lax.integer_pow(u, n - 2) if n != 2 else 1.0)
    return g1, g2


def _sqrt(u, y):
    g1 = 0.5 / y
    return g1, -0.5 * g1 / u


_UNARY = {
    "tanh": lambda u, y: ((g1 := 1.0 - y * y), -2.0 * y * g1),
    "logistic": lambda u, y: ((g1 := y * (1.0 - y)), g1 * (1.0 - 2.0 * y)),
    "sin": lambda u, y: (jnp.cos(u), -y),
    "cos": lambda u, y: (-jnp.sin(u), -y),
    "tan": lambda u, y: ((g1 := 1.0 + y * y), 2.0 * y * g1),
    "exp": lambda u, y: (y, y),
    "exp2": lambda u, y: ((g1 := y * math.log(2.0)), g1 * math.log(2.0)),
    "expm1": lambda u, y: (y + 1.0, y + 1.0),
    "log": lambda u, y: ((g1 := 1.0 / u), -g1 * g1),
    "log1p": lambda u, y: ((g1 := 1.0 / (1.0 + u)), -g1 * g1),
    "sqrt": _sqrt,
    "rsqrt": lambda u, y: (-0.5 * y / u, 0.75 * y / (u * u)),
    "cbrt": lambda u, y: ((g1 := 1.0 / (3.0 * y * y)), -2.0 * g1 / (3.0 * u)),
    "square": lambda u, y: (2.0 * u, jnp.full_like(u, 2.0)),
    "abs": lambda u, y: (jnp.sign(u), None),
    "sinh": lambda u, y: (jnp.cosh(u), y),
    "cosh": lambda u, y: (jnp.sinh(u), y),
    "asinh": lambda u, y: ((g1 := lax.rsqrt(1.0 + u * u)), -u * g1**3),
    "acosh": lambda u, y: ((g1 := lax.rsqrt(u * u - 1.0)), -u * g1**3),
    "atanh": lambda u, y: ((g1 := 1.0 / (1.0 - u * u)), 2.0 * u * g1 * g1),
    "asin": lambda u, y: ((g1 := lax.rsqrt(1.0 - u * u)), u * g1**3),
    "acos": lambda u, y: ((g1 := -lax.rsqrt(1.0 - u * u)), u * g1**3),
    "atan": lambda u, y: ((g1 := 1.0 / (1.0 + u * u)), -2.0 * u * g1 * g1),
    "erf": lambda u, y: ((g1 := (2.0 / math.sqrt(math.pi)) * jnp.exp(-u * u)), -2.0 * u * g1),
    "erf_inv": lambda u, y: (
        (g1 := (math.sqrt(math.pi) / 2.0) * jnp.exp(y * y)),
        2.0 * y * g1 * g1,
    ),
    "erfc": lambda u, y: ((g1 := -(2.0 / math.sqrt(math.pi)) * jnp.exp(-u * u)), -2.0 * u * g1),
}


def _unary_entry(fn):
    return lambda u, y, params: fn(u, y)


# --- elementwise functions of two arguments ------------------------------------------------------
#
# y = h(a, b):  J_y = h_a J_a + h_b J_b,
#               L_y = h_a L_a + h_b L_b + h_aa |J_a|^2 + 2 h_ab <J_a, J_b> + h_bb |J_b|^2,
# with |.|^2 and <.,.> summed over the direction axis. Only the partials of the arguments that
# depend on the input are formed.


def _same_selector(y, a, b) -> "_Selector | None":
    """The common selector when every input-dependent argument is the input's (scaled) selector
    over the same directions and the result is a d-vector like the input; else None."""
    sels = [t.jac for t in (a, b) if isinstance(t, _Triple)]
    if not all(isinstance(j, _Selector) for j in sels) or y.shape != (sels[0].d,):
        return None
    if any(j.idx is not sels[0].idx for j in sels):
        return None
    if any(not isinstance(t, _Triple) and jnp.ndim(t) > 1 for t in (a, b)):
        return None
    return sels[0]


def _combine_selectors(y, sel, a, b, ha, hb, haa, hab, hbb) -> _Triple:
    """`_combine` when both Jacobians are diagonal in the sampled coordinates: per-direction
    scales instead of dense `(k, d)` arrays."""
    dtype = y.dtype
    scale, lap = None, None
    sa = a.jac.scales(dtype) if isinstance(a, _Triple) else None
    sb = b.jac.scales(dtype) if isinstance(b, _Triple) else None
    if sa is not None:
        scale = sel.pick(ha) * sa
        lap = _add_opt(_scale_opt(ha, a.lap), None if haa is None else haa * sel.on_grid(sa * sa))
    if sb is not None:
        scale = _add_opt(scale, sel.pick(hb) * sb)
        lap = _add_opt(lap, _scale_opt(hb, b.lap))
        lap = _add_opt(lap, None if hbb is None else hbb * sel.on_grid(sb * sb))
    if sa is not None and sb is not None and hab is not None:
        lap = _add_opt(lap, 2.0 * hab * sel.on_grid(sa * sb))
    if lap is not None:
        lap = jnp.broadcast_to(lap, y.shape)
    return _Triple(y, _Selector(sel.idx, sel.d, scale), lap)


def _combine(y, a, b, ha, hb, haa, hab, hbb) -> _Triple:
    sel = _same_selector(y, a, b)
    if sel is not None:
        return _combine_selectors(y, sel, a, b, ha, hb, haa, hab, hbb)
    ta, tb = isinstance(a, _Triple), isinstance(b, _Triple)
    jac, lap = None, None
    if ta:
        jac = ha * _jac_to(a, y.ndim)
        lap = _add_opt(
            _scale_opt(ha, a.lap), _scale_opt(haa, _sq_norm(a) if haa is not None else None)
        )
    if tb:
        jac = _add_opt(jac, hb * _jac_to(b, y.ndim))
        lap = _add_opt(lap, _scale_opt(hb, b.lap))
        lap = _add_opt(lap, _scale_opt(hbb, _sq_norm(b) if hbb is not None else None))
    if ta and tb and hab is not None:
        cross = jnp.sum(_jac_to(a, y.ndim) * _jac_to(b, y.ndim), axis=0)
        lap = _add_opt(lap, 2.0 * hab * cross)
    jac = jnp.broadcast_to(jac, jac.shape[:1] + y.shape)
    if lap is not None:
        lap = jnp.broadcast_to(lap, y.shape)
    return _Triple(y, jac, lap)


def _mul_rule(eqn, invals):
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    return [_combine(y, a, b, bv, av, None, 1.0, None)]


def _div_rule(eqn, invals):
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    inv = 1.0 / bv
    return [_combine(y, a, b, inv, -y * inv, None, -inv * inv, 2.0 * y * inv * inv)]


def _pow_rule(eqn, invals):
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    ha = haa = hb = hbb = hab = None
    if isinstance(a, _Triple):
        ha = bv * lax.pow(av, bv - 1.0)
        haa = bv * (bv - 1.0) * lax.pow(av, bv - 2.0)
    if isinstance(b, _Triple):
        log_a = jnp.log(av)
        hb = y * log_a
        hbb = hb * log_a
        if isinstance(a, _Triple):
            hab = lax.pow(av, bv - 1.0) * (1.0 + bv * log_a)
    return [_combine(y, a, b, ha, hb, haa, hab, hbb)]


def _atan2_rule(eqn, invals):
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    r2 = av * av + bv * bv
    r4 = r2 * r2
    return [
        _combine(
            y,
            a,
            b,
            bv / r2,
            -av / r2,
            -2.0 * av * bv / r4,
            (av * av - bv * bv) / r4,
            2.0 * av * bv / r4,
        )
    ]


def _add_rule(sign: float):
    def rule(eqn, invals):
        a, b = invals
        (y,) = _bind(eqn, [_value(a), _value(b)])
        if not isinstance(b, _Triple) and a.value.shape == y.shape:
            # `x + c` keeps the Jacobian of `x`, symbolic identity included.
            return [_Triple(y, a.jac, a.lap)]
        if sign > 0 and not isinstance(a, _Triple) and b.value.shape == y.shape:
            return [_Triple(y, b.jac, b.lap)]
        return [_combine(y, a, b, 1.0, sign, None, None, None)]

    return rule


def _select(mask, a, b, y) -> _Triple:
    """The triple equal to `a` where `mask` holds and to `b` elsewhere (a piecewise function)."""
    ja = _jac_to(a, y.ndim) if isinstance(a, _Triple) else 0.0
    jb = _jac_to(b, y.ndim) if isinstance(b, _Triple) else 0.0
    jac = jnp.broadcast_to(jnp.where(mask, ja, jb), (_num_dirs(a, b),) + y.shape)
    la = a.lap if isinstance(a, _Triple) else None
    lb = b.lap if isinstance(b, _Triple) else None
    lap = None
    if la is not None or lb is not None:
        lap = jnp.broadcast_to(
            jnp.where(mask, 0.0 if la is None else la, 0.0 if lb is None else lb), y.shape
        )
    return _Triple(y, jac, lap)


def _num_dirs(*ts) -> int:
    for t in ts:
        if isinstance(t, _Triple):
            if isinstance(t.jac, _Selector):
                return t.jac.d if t.jac.idx is None else t.jac.idx.shape[0]
            return t.jac.shape[0]
    raise AssertionError("no argument depends on the input")


def _max_rule(keep_first):
    # Piecewise: the derivatives of whichever argument is selected (ties pick the first).
    def rule(eqn, invals):
        a, b = invals
        av, bv = _value(a), _value(b)
        (y,) = _bind(eqn, [av, bv])
        return [_select(keep_first(av, bv), a, b, y)]

    return rule


def _pick(mask, a, b):
    """`where(mask, a, b)` for triples or constants."""
    y = jnp.where(mask, _value(a), _value(b))
    if not (isinstance(a, _Triple) or isinstance(b, _Triple)):
        return y
    return _select(mask, a, b, y)


def _clamp_rule(eqn, invals):
    lo, u, hi = invals
    inner = _pick(_value(u) >= _value(lo), u, lo)
    return [_pick(_value(inner) <= _value(hi), inner, hi)]


# --- linear and structural operations ------------------------------------------------------------


def _linear_rule(is_fixed: Callable[[int], bool] = lambda i: False):
    """Rule for an operation linear in all its arguments but those whose position satisfies
    `is_fixed` (predicates, indices), which never depend on the input: the Jacobian is the
    operation mapped over the direction axis, the Laplacian is the operation applied to the
    Laplacians (zeros standing in for the parts of constant arguments)."""

    def rule(eqn, invals):
        values = [_value(v) for v in invals]
        ys = _bind(eqn, values)
        if not _is_float(ys[0]):
            return ys
        jac_args, in_axes, lap_args = [], [], []
        any_lap = False
        for i, v in enumerate(invals):
            if is_fixed(i):
                jac_args.append(v)
                in_axes.append(None)
                lap_args.append(v)
            elif isinstance(v, _Triple):
                jac_args.append(_dense_jac(v))
                in_axes.append(0)
                any_lap = any_lap or v.lap is not None
                lap_args.append(jnp.zeros_like(v.value) if v.lap is None else v.lap)
            else:
                zero = jnp.zeros_like(v)
                jac_args.append(zero)
                in_axes.append(None)
                lap_args.append(zero)
        jacs = jax.vmap(lambda *args: _bind(eqn, args), in_axes=in_axes)(*jac_args)
        laps = _bind(eqn, lap_args) if any_lap else [None] * len(ys)
        return [_Triple(*parts) for parts in zip(ys, jacs, laps, strict=True)]

    return rule


def _dot_general_rule(eqn, invals):
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]

    def lhs_map(p):
        return _bind(eqn, [p, bv])[0]

    def rhs_map(q):
        return _bind(eqn, [av, q])[0]

    def through(t, linear_map, own_contracting, own_batch, other, other_contracting):
        """The Jacobian of `linear_map(t)`, exploiting a symbolic identity Jacobian of `t`."""
        if isinstance(t.jac, _Selector) and own_contracting == (0,) and not own_batch:
            # `t` is the input vector, contracted: d out / d x_k is the other operand's slice k
            # along its contracting axis, already in the output's axis order.
            return t.jac.rows(jnp.moveaxis(other, other_contracting[0], 0))
        return jax.vmap(linear_map)(_dense_jac(t))

    jac, lap = None, None
    if isinstance(a, _Triple):
        jac = through(a, lhs_map, tuple(lc), lb, bv, rc)
        lap = None if a.lap is None else lhs_map(a.lap)
    if isinstance(b, _Triple):
        jac = _add_opt(jac, through(b, rhs_map, tuple(rc), rb, av, lc))
        lap = _add_opt(lap, None if b.lap is None else rhs_map(b.lap))
    if isinstance(a, _Triple) and isinstance(b, _Triple):
        # 2 sum_k A(J_a[k], J_b[k]): the direction axis becomes one more contracted axis.
        shift = lambda dims: tuple(i + 1 for i in dims)
        cross = lax.dot_general(
            _dense_jac(a),
            _dense_jac(b),
            (((0, *shift(lc)), (0, *shift(rc))), (shift(lb), shift(rb))),
            preferred_element_type=eqn.params.get("preferred_element_type"),
        )
        lap = _add_opt(lap, 2.0 * cross)
    return [_Triple(y, jac, lap)]


def _tlinear(t: _Triple, fn: Callable[[Array], Array]) -> _Triple:
    """A linear map `fn` of the value shape applied to all three parts of `t`."""
    lap = None if t.lap is None else fn(t.lap)
    return _Triple(fn(t.value), jax.vmap(fn)(_dense_jac(t)), lap)


def _reduced_axes_first(t: _Triple, axes) -> tuple[_Triple, tuple[int, ...]]:
    """`t` with the reduced `axes` flattened into one leading axis, and the kept shape."""
    shape = t.value.shape
    kept = [i for i in range(len(shape)) if i not in axes]
    n = math.prod(shape[i] for i in axes)
    out_shape = tuple(shape[i] for i in kept)
    return _tlinear(t, lambda v: v.transpose((*axes, *kept)).reshape((n, *out_shape))), out_shape


def _reduce_prod_rule(eqn, invals):
    # A balanced tree of pairwise products with the `mul` rule: exact, free of divisions (so
    # zeros among the factors are harmless), and log2(n) vectorised steps.
    (u,) = invals
    t, _ = _reduced_axes_first(u, tuple(eqn.params["axes"]))
    while t.value.shape[0] > 1:
        n = t.value.shape[0]
        half = n // 2
        a = _tlinear(t, lambda v, half=half: v[:half])
        b = _tlinear(t, lambda v, half=half: v[half : 2 * half])
        prod = _combine(a.value * b.value, a, b, b.value, a.value, None, 1.0, None)
        if n % 2:
            rest = _tlinear(t, lambda v, n=n: v[n - 1 :])
            prod = _Triple(
                jnp.concatenate([prod.value, rest.value]),
                jnp.concatenate([prod.jac, rest.jac], axis=1),
                None
                if prod.lap is None and rest.lap is None
                else jnp.concatenate(
                    [
                        jnp.zeros_like(prod.value) if prod.lap is None else prod.lap,
                        jnp.zeros_like(rest.value) if rest.lap is None else rest.lap,
                    ]
                ),
            )
        t = prod
    return [_tlinear(t, lambda v: v[0])]


def _reduce_max_rule(arg_extremum):
    # Piecewise: the derivatives of the (first) extremal entry.
    def rule(eqn, invals):
        (u,) = invals
        t, _ = _reduced_axes_first(u, tuple(eqn.params["axes"]))
        pick = arg_extremum(t.value, axis=0)
        take = lambda v: jnp.take_along_axis(v, pick[None], axis=0)[0]
        return [_tlinear(t, take)]

    return rule


def _bilinear_rule(eqn, invals):
    # y = A(a, b): J = A(J_a, b) + A(a, J_b), L = A(L_a, b) + A(a, L_b) + 2 sum_k A(J_a[k], J_b[k]).
    a, b = invals
    av, bv = _value(a), _value(b)
    (y,) = _bind(eqn, [av, bv])
    op = lambda p, q: _bind(eqn, [p, q])[0]
    jac, lap = None, None
    if isinstance(a, _Triple):
        jac = jax.vmap(lambda p: op(p, bv))(_dense_jac(a))
        lap = None if a.lap is None else op(a.lap, bv)
    if isinstance(b, _Triple):
        jac = _add_opt(jac, jax.vmap(lambda q: op(av, q))(_dense_jac(b)))
        lap = _add_opt(lap, None if b.lap is None else op(av, b.lap))
    if isinstance(a, _Triple) and isinstance(b, _Triple):
        cross = jnp.sum(jax.vmap(op)(_dense_jac(a), _dense_jac(b)), axis=0)
        lap = _add_opt(lap, 2.0 * cross)
    return [_Triple(y, jac, lap)]


def _convert_rule(eqn, invals):
    (u,) = invals
    if not jnp.issubdtype(eqn.params["new_dtype"], jnp.inexact):
        return _bind(eqn, [u.value])
    if eqn.params["new_dtype"] == u.value.dtype:
        # A change of weak type only: keep the (possibly symbolic) Jacobian.
        return [_Triple(_bind(eqn, [u.value])[0], u.jac, u.lap)]
    return _linear_rule()(eqn, invals)


def _zero_derivative_rule(eqn, invals):
    # Piecewise-constant or non-differentiable outputs (comparisons, rounding, stop_gradient):
    # constants as far as the Laplacian is concerned.
    return _bind(eqn, [_value(v) for v in invals])


def _subjaxpr(eqn) -> tuple[Jaxpr, list]:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, ClosedJaxpr):
            return sub.jaxpr, list(sub.consts)
        if isinstance(sub, Jaxpr):
            return sub, []
    raise NotImplementedError(
        f"`forward_laplacian` cannot find the body of `{eqn.primitive.name}`."
    )


def _call_rule(eqn, invals):
    # Inline the body; for custom_jvp/custom_vjp functions this differentiates the primal
    # function, whose derivatives the custom rules are meant to agree with.
    jaxpr, consts = _subjaxpr(eqn)
    return _interpret(jaxpr, consts, invals)


_RULES = {name: _unary_rule(_unary_entry(fn)) for name, fn in _UNARY.items()}
_RULES.update(
    {
        "integer_pow": _unary_rule(_integer_pow),
        "mul": _mul_rule,
        "div": _div_rule,
        "pow": _pow_rule,
        "atan2": _atan2_rule,
        "add": _add_rule(1.0),
        "add_any": _add_rule(1.0),
        "sub": _add_rule(-1.0),
        "max": _max_rule(lambda a, b: a >= b),
        "min": _max_rule(lambda a, b: a <= b),
        "clamp": _clamp_rule,
        "dot_general": _dot_general_rule,
        "convert_element_type": _convert_rule,
        "select_n": _linear_rule(lambda i: i == 0),
        "dynamic_slice": _linear_rule(lambda i: i >= 1),
        "dynamic_update_slice": _linear_rule(lambda i: i >= 2),
        "gather": _linear_rule(lambda i: i == 1),
        "scatter-add": _linear_rule(lambda i: i == 1),
        "scatter_add": _linear_rule(lambda i: i == 1),
        "conv_general_dilated": _bilinear_rule,
        "reduce_prod": _reduce_prod_rule,
        "reduce_max": _reduce_max_rule(jnp.argmax),
        "reduce_min": _reduce_max_rule(jnp.argmin),
    }
)
for _name in (
    "neg",
    "broadcast_in_dim",
    "reshape",
    "squeeze",
    "transpose",
    "reduce_sum",
    "slice",
    "concatenate",
    "stack",
    "split",
    "unstack",
    "reduce_window_sum",
    "pad",
    "rev",
    "copy",
    "copy_p",
    "cumsum",
    "reduce_precision",
    "sharding_constraint",
):
    _RULES[_name] = _linear_rule()


def _reduce_sum_rule(eqn, invals):
    (u,) = invals
    if (
        isinstance(u, _Triple)
        and isinstance(u.jac, _Selector)
        and tuple(eqn.params["axes"]) == (0,)
        and u.value.ndim == 1
    ):
        # d(sum_i u_i)/d(direction k) = scale[k]: no dense (k, d) Jacobian.
        (y,) = _bind(eqn, [u.value])
        lap = None if u.lap is None else jnp.sum(u.lap)
        return [_Triple(y, u.jac.scales(y.dtype), lap)]
    return _linear_rule()(eqn, invals)


_RULES["reduce_sum"] = _reduce_sum_rule
for _name in (
    "sign",
    "floor",
    "ceil",
    "round",
    "is_finite",
    "stop_gradient",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "xor",
    "argmax",
    "argmin",
):
    _RULES[_name] = _zero_derivative_rule
for _name in (
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "call",
    "remat",
    "remat2",
    "checkpoint",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
):
    _RULES[_name] = _call_rule


def _interpret(jaxpr: Jaxpr, consts, args) -> list:
    """Evaluates `jaxpr`, propagating `_Triple`s through every equation that touches one."""
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def write(v, val):
        if not isinstance(v, DropVar):
            env[v] = val

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        write(v, c)
    for v, a in zip(jaxpr.invars, args, strict=True):
        write(v, a)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if not any(isinstance(v, _Triple) for v in invals):
            outvals = _bind_constant(eqn, invals)
        else:
            rule = _RULES.get(eqn.primitive.name)
            if rule is None:
                raise NotImplementedError(
                    f"`forward_laplacian` has no rule for the primitive `{eqn.primitive.name}`; "
                    'use `laplacian(f, x, method="taylor")` for this function.'
                )
            outvals = rule(eqn, invals)
        for v, val in zip(eqn.outvars, outvals, strict=True):
            write(v, val)
    return [read(v) for v in jaxpr.outvars]


def forward_laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[ArrayLike, " d"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, ""]:
    r"""The Laplacian $\Delta f(x) = \sum_i \partial^2 f / \partial x_i^2$ by the forward Laplacian.

    `f` is traced to a jaxpr once, and every operation is evaluated on triples (value, Jacobian
    with respect to `x` with the direction axis first, Laplacian). For an elementwise
    `y = g(u)` the rule is `J_y = g'(u) J_u`, `L_y = g'(u) L_u + g''(u) sum_k J_u[k]^2`; for a
    bilinear `y = A(a, b)` (`mul`, `dot_general`) it is
    `L_y = A(L_a, b) + A(a, L_b) + 2 sum_k A(J_a[k], J_b[k])`; linear operations act on each part.
    Intermediate quantities that do not depend on `x` (weights, biases, anything computed from
    them) are kept as plain constants and cost nothing, and the Jacobian of `x` itself is kept
    symbolic, so a first linear layer costs a copy of its weight rather than a product with the
    identity. Unlike Taylor mode, the per-direction second derivatives are summed as they are
    formed, so only one Laplacian array is carried per intermediate instead of `d`.

    Supported: `add`, `sub`, `mul`, `div`, `neg`, `dot_general`, `conv_general_dilated`, `tanh`,
    `logistic`, `sin`, `cos`, `tan`, `exp`, `exp2`, `expm1`, `log`, `log1p`, `sqrt`, `rsqrt`,
    `cbrt`, `square`, `integer_pow`, `pow`, `abs`, `sinh`, `cosh`, inverse trigonometric and
    hyperbolic functions, `erf`, `erfc`, `erf_inv`, `atan2`; piecewise `max`, `min`, `clamp`,
    `reduce_max`, `reduce_min`; `reduce_sum`, `reduce_prod`, `cumsum`, `reduce_window_sum`;
    structural `broadcast_in_dim`, `reshape`, `squeeze`, `transpose`, `concatenate`, `stack`,
    `split`, `unstack`, `pad`, `slice`, `dynamic_slice`, `dynamic_update_slice`, `gather`,
    `scatter-add`, `rev`, `select_n`, `convert_element_type`; comparisons, rounding and
    `stop_gradient` (zero derivative); and `jit`, `closed_call`, `checkpoint`,
    `custom_jvp_call`, `custom_vjp_call`, whose bodies are inlined (custom derivative rules are
    not used: the primal function is differentiated). Any other primitive raises
    `NotImplementedError`; use `laplacian(f, x, method="taylor")` then.

    Composes with `jax.jit`, `jax.vmap` over points and `jax.grad` with respect to parameters
    closed over by `f`.

    **Arguments:**

    - `f`: scalar field of one point.
    - `x`: the point, shape `(d,)`.
    - `chunk_size`: if given, propagate `chunk_size` directions at a time (the Laplacian is a
        sum over directions, so each chunk gives its share) to bound memory at large `d`; chunks
        are rematerialised under reverse-mode differentiation.

    **Returns:** a scalar.

    **References:** R. Li, H. Ye, D. Jiang, X. Wen, C. Wang, Z. Li, X. Li, D. He, J. Chen,
    W. Ren, L. Wang, "A computational framework for neural network-based variational Monte Carlo
    with Forward Laplacian", Nature Machine Intelligence 6 (2024), arXiv:2307.08214.
    """
    x = check_point("forward_laplacian", x)
    check_chunk_size("forward_laplacian", chunk_size)
    (d,) = x.shape
    if chunk_size is None or chunk_size >= d:
        # All directions at once: the input's Jacobian is the identity, kept symbolic.
        return _laplacian_along(f, x)(_Selector(None, d))
    return directional_laplacian(f, x, jnp.arange(d), chunk_size)


def _laplacian_along(f, x: Float[Array, " d"]) -> Callable[["_Selector | Array"], Array]:
    """Traces `f` once; the returned function maps a Jacobian of the input (a `_Selector` or
    a dense `(k, d)` array of directions) to `sum_k v_k^T H v_k`, by one interpreted pass."""
    closed = jax.make_jaxpr(f)(jax.ShapeDtypeStruct(x.shape, x.dtype))
    out_avals = closed.out_avals
    if len(out_avals) != 1 or out_avals[0].shape != ():
        seen = [tuple(a.shape) for a in out_avals]
        raise ValueError(
            f"`forward_laplacian`: `f` must return a scalar, got outputs of shapes {seen} for "
            f"`x` of shape {x.shape}."
        )

    def along(jac):
        (out,) = _interpret(closed.jaxpr, closed.consts, [_Triple(x, jac, None)])
        if not isinstance(out, _Triple) or out.lap is None:
            return jnp.zeros((), x.dtype)
        return out.lap.astype(x.dtype)

    return along


def directional_laplacian(
    f: Callable[[Float[Array, " d"]], Float[Array, ""]],
    x: Float[Array, " d"],
    directions: Int[Array, " k"] | Array,
    chunk_size: int | None = None,
    probe: Callable[[Array], Float[Array, " d"]] | None = None,
) -> Float[Array, ""]:
    """`sum_k v_k^T H v_k` over `k` directions, summed as they are formed (collapsed).

    `directions` is either an integer vector of coordinates `j` (then `v_k = e_j`, and the
    Jacobian of `x` stays a symbolic row selection: a first linear layer costs `k` rows of its
    weight, not a product with `k` one-hot vectors) or, with `probe` given, a batch of PRNG keys
    each turned into a dense probe `v_k = probe(key_k)` (inside its chunk, so that at most
    `chunk_size` probes of length `d` exist at a time). This is the forward pass behind
    `forward_laplacian(..., chunk_size=...)` and the stochastic estimators' default path.
    Raises `NotImplementedError` for a primitive the interpreter does not support (callers fall
    back to jets).
    """
    along = _laplacian_along(f, x)
    (d,) = x.shape

    def chunk(positions):
        rows = directions[positions]
        return along(_Selector(rows, d) if probe is None else jax.vmap(probe)(rows).astype(x.dtype))

    return sum_over_chunks(chunk, directions.shape[0], chunk_size)
