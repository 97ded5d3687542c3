"""Operators for time-dependent data: frames of a trajectory are the channels of a grid function.

A trajectory sample `(frames, *spatial)` is split into the first `t_in` frames (the input) and
the next `t_out` frames (the target). Two ways to predict the target, as in the FNO paper's
Navier-Stokes experiments:

- [`Autoregressive`][]: a spatial operator maps the last `t_in` frames to the next frame(s); it
  is applied repeatedly, each prediction shifted into the window (FNO-2D, "recurrent in time").
- [`SpaceTimeOperator`][]: an operator with one more spatial axis maps the `t_in` input frames,
  repeated along a new time axis of length `t_out`, to the whole space-time block at once
  (FNO-3D).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractOperator


class Autoregressive(AbstractOperator):
    """Rolls a one-step operator out in time: frames `t_in` -> the next `steps` frames.

    With a window `w` of the last `t_in = step.in_channels` frames, each call of `step` predicts
    the next `k = step.out_channels` frames `p`, and the window becomes
    `concatenate([w[k:], p])`. The predictions of all calls, concatenated, are the output.
    Training through the whole rollout (the loss on all `steps` frames, back-propagated through
    every call) is the FNO paper's recipe for its FNO-2D Navier-Stokes model.

    The rollout is a `jax.lax.scan`, fully unrolled by default: on CPU, XLA runs
    convolutions inside a loop body far more slowly than the same convolutions unrolled
    (measured for an MgNO step: 3.4 s vs 0.12 s per optimiser step; for an FNO step 0.25 s vs
    0.19 s). Pass `unroll=1` to keep a rolled loop, whose compile time does not grow with
    `steps`.

    ??? cite "Reference"

        Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations",
        ICLR 2021, Section 5.3 ("FNO-2D ... propagates the solution recurrently in time").
    """

    step: AbstractOperator
    steps: int = eqx.field(static=True)
    unroll: int | bool = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)

    def __init__(self, step: AbstractOperator, steps: int, *, unroll: int | bool = True):
        """**Arguments:**

        - `step`: an operator mapping `t_in` frames (its `in_channels`) to the next `k` frames
            (its `out_channels`, at most `t_in`).
        - `steps`: number of output frames, a positive multiple of `k`.
        - `unroll`: passed to `jax.lax.scan`: `True` (default) unrolls the rollout completely,
            an int unrolls that many calls per loop iteration.
        """
        if not isinstance(step, AbstractOperator):
            raise ValueError(
                f"`Autoregressive` needs `step` to be a sciml operator, got {type(step).__name__}."
            )
        k = step.out_channels
        if k > step.in_channels:
            raise ValueError(
                f"`Autoregressive` needs a step with out_channels <= in_channels (the predicted "
                f"frames are shifted into the input window), got {k} > {step.in_channels}."
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or steps % k:
            raise ValueError(
                f"`Autoregressive` got `steps={steps!r}`, but it must be a positive multiple of "
                f"the frames predicted per call (step.out_channels = {k})."
            )
        if not isinstance(unroll, bool | int) or (not isinstance(unroll, bool) and unroll < 1):
            raise ValueError(
                f"`Autoregressive` got `unroll={unroll!r}`, but it must be True, False or an "
                "int >= 1."
            )
        self.step = step
        self.steps = steps
        self.unroll = unroll
        self.in_channels = step.in_channels
        self.out_channels = steps
        self.num_spatial_dims = step.num_spatial_dims

    def __call__(self, x: Float[Array, " t_in *spatial"]) -> Float[Array, " steps *spatial"]:
        """**Arguments:**

        - `x`: the last `t_in` frames, shape `(t_in, *spatial)`, oldest first.

        **Returns:**

        The next `steps` frames, shape `(steps, *spatial)`.
        """
        if x.ndim != self.num_spatial_dims + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"`Autoregressive` expects an input of shape ({self.in_channels}, *spatial) with "
                f"{self.num_spatial_dims} spatial dims, got shape {x.shape}."
            )
        k = self.step.out_channels
        # The window carries predictions: it takes their dtype (a float64 model given float32
        # frames predicts float64).
        x = x.astype(jax.eval_shape(self.step, x).dtype)

        def advance(window, _):
            pred = self.step(window)
            return jnp.concatenate([window[k:], pred], axis=0), pred

        _, preds = jax.lax.scan(advance, x, None, length=self.steps // k, unroll=self.unroll)
        return preds.reshape(self.steps, *x.shape[1:])


class SpaceTimeOperator(AbstractOperator):
    """Predicts a block of frames at once with an operator over space *and* time.

    The `t_in` input frames are repeated along a new last axis of length `steps` (the time axis
    of the output), the wrapped operator (one more spatial dimension than the data, e.g. a 3-D
    [`sciml.operators.FNO`][] for 2-D fields) maps the `(t_in, *spatial, steps)` block to
    `(1, *spatial, steps)`, and the time axis is moved back to the front. This is the FNO
    paper's FNO-3D set-up; pad the time axis of the operator (it is not periodic), not space.
    """

    model: AbstractOperator
    steps: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    num_spatial_dims: int = eqx.field(static=True)

    def __init__(self, model: AbstractOperator, steps: int):
        """**Arguments:**

        - `model`: an operator with `in_channels = t_in`, `out_channels = 1` and one spatial
            axis more than the data (the last one is time).
        - `steps`: number of output frames (the length of the time axis).
        """
        if not isinstance(model, AbstractOperator):
            raise ValueError(
                f"`SpaceTimeOperator` needs `model` to be a sciml operator, got "
                f"{type(model).__name__}."
            )
        if model.out_channels != 1:
            raise ValueError(
                "`SpaceTimeOperator` needs a model with out_channels = 1 (one value per "
                f"space-time point), got {model.out_channels}."
            )
        if model.num_spatial_dims < 2:
            raise ValueError(
                "`SpaceTimeOperator` needs a model with at least 2 axes (space and time), got "
                f"num_spatial_dims = {model.num_spatial_dims}."
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"`SpaceTimeOperator` got `steps={steps!r}`, but it must be an int >= 1."
            )
        self.model = model
        self.steps = steps
        self.in_channels = model.in_channels
        self.out_channels = steps
        self.num_spatial_dims = model.num_spatial_dims - 1

    def __call__(self, x: Float[Array, " t_in *spatial"]) -> Float[Array, " steps *spatial"]:
        """**Arguments:**

        - `x`: the `t_in` input frames, shape `(t_in, *spatial)`.

        **Returns:**

        The next `steps` frames, shape `(steps, *spatial)`.
        """
        if x.ndim != self.num_spatial_dims + 1 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"`SpaceTimeOperator` expects an input of shape ({self.in_channels}, *spatial) "
                f"with {self.num_spatial_dims} spatial dims, got shape {x.shape}."
            )
        block = jnp.broadcast_to(x[..., None], (*x.shape, self.steps))
        return jnp.moveaxis(self.model(block)[0], -1, 0)
