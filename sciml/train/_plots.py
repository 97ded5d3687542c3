"""Training-curve and prediction plots (matplotlib, Agg, written atomically)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import ArrayLike, Float

from .._atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(figsize: tuple[int | float, int | float]) -> Figure:
    # Figures are built with the object-oriented API on an Agg canvas: no pyplot global
    # state, no GUI backend, nothing is ever shown. matplotlib is imported here, on the first
    # plot, so that `import sciml.train` does not pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)
    return path


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, x: str = "epoch"
) -> pathlib.Path:
    """Plots the training loss and every evaluation metric against the epoch (or `x`).

    **Arguments:**

    - `history`: the records returned by `fit` (dicts with `"epoch"`, `"train_loss"`,
        `"eval_<name>"` and `"loss_<term>"` entries); other keys are ignored.
    - `path`: output file (its suffix picks the format, e.g. `.png`, `.pdf`).
    - `x`: the record key on the horizontal axis, e.g. `"step"` for PINN runs.

    **Returns:**

    `path`. The y axis is logarithmic when all plotted values are positive.
    """
    if len(history) == 0:
        raise ValueError("`history` must contain at least one record, got an empty sequence.")
    epochs = [record.get(x, i) for i, record in enumerate(history)]
    names = list(
        dict.fromkeys(
            k
            for record in history
            for k in record
            if k == "train_loss" or k.startswith(("eval_", "loss_"))
        )
    )
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    all_positive = True
    for name in names:
        values = np.array([record.get(name, np.nan) for record in history], dtype=float)
        # Metrics evaluated only every few epochs are drawn through their evaluated points.
        keep = np.isfinite(values)
        all_positive &= bool(np.all(values[keep] > 0))
        xs = np.asarray(epochs)[keep]
        ax.plot(xs, values[keep], marker="o" if len(xs) < 30 else None, label=name)
    if all_positive:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss / metric")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_parameters(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    x: str = "step",
    prefix: str = "param_",
) -> pathlib.Path:
    """Plots the trajectories of the records' `<prefix><name>` entries (e.g. the unknowns of
    an inverse problem, logged by `sciml.pinn.solve`), one panel per name; array-valued
    entries (lists) get one line per component.

    **Returns:** `path`. A panel's y axis is logarithmic when its values are all positive and
    span more than a factor of 10.
    """
    names = list(dict.fromkeys(k for r in history for k in r if k.startswith(prefix)))
    if not names:
        raise ValueError(f"`history` has no {prefix!r} entries to plot.")
    fig = _figure((4.5 * len(names), 3.5))
    axes = np.atleast_1d(np.asarray(fig.subplots(1, len(names), squeeze=False))).ravel()
    for ax, name in zip(axes, names, strict=True):
        rows = [(r.get(x, i), r[name]) for i, r in enumerate(history) if name in r]
        xs = np.asarray([row[0] for row in rows], dtype=float)
        values = np.asarray([np.ravel(row[1]) for row in rows], dtype=float)
        for j in range(values.shape[1]):
            label = name[len(prefix) :] if values.shape[1] == 1 else f"{name[len(prefix) :]}[{j}]"
            ax.plot(xs, values[:, j], marker="o" if len(xs) < 30 else None, label=label)
        finite = values[np.isfinite(values)]
        if finite.size and np.all(finite > 0) and finite.max() > 10 * finite.min():
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(name[len(prefix) :])
        ax.grid(True, which="both", alpha=0.3)
        if values.shape[1] > 1:
            ax.legend(fontsize="small")
    return _save(fig, path)


def plot_predictions(
    inputs: ArrayLike,
    targets: ArrayLike,
    preds: ArrayLike,
    path: str | os.PathLike,
    *,
    num: int = 3,
    titles: Sequence[str] | None = None,
) -> pathlib.Path:
    """Plots inputs, targets, predictions and errors for the first `num` samples.

    All arrays are batches of channels-first samples, `(n, channels, *spatial)` with one or
    two spatial axes; channel 0 is plotted. For 2-D fields each row is a sample and the
    columns are input / truth / prediction / |error| images with colorbars (truth and
    prediction share one colour scale). For 1-D fields the columns are input / truth and
    prediction overlaid / |error| line plots.

    **Arguments:**

    - `inputs`: `(n, in_channels, *spatial)`.
    - `targets`: `(n, out_channels, *spatial)`.
    - `preds`: same shape as `targets`.
    - `path`: output file (its suffix picks the format).
    - `num`: number of samples (rows), at most `n`.
    - `titles`: column titles replacing the defaults above (3 for 1-D, 4 for 2-D).

    **Returns:**

    `path`.
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    preds = np.asarray(preds)
    if targets.shape != preds.shape:
        raise ValueError(
            f"`preds` must have the shape of `targets`, got {preds.shape} and {targets.shape}."
        )
    if targets.ndim not in (3, 4):
        raise ValueError(
            "`targets` must have shape (n, channels, *spatial) with 1 or 2 spatial axes, got "
            f"shape {targets.shape}."
        )
    if inputs.ndim != targets.ndim or inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"`inputs` must have shape (n, channels, *spatial) like `targets`, got "
            f"{inputs.shape} and {targets.shape}."
        )
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"`num` must be a positive integer, got {num!r}.")
    num = min(num, targets.shape[0])
    two_d = targets.ndim == 4
    default = (
        ["input", "truth", "prediction", "|error|"]
        if two_d
        else ["input", "truth / prediction", "|error|"]
    )
    if titles is None:
        titles = default
    elif len(titles) != len(default):
        raise ValueError(f"`titles` must have {len(default)} entries, got {len(titles)}.")
    cols = len(default)
    fig = _figure((3.2 * cols, 2.8 * num))
    axes = np.asarray(fig.subplots(num, cols, squeeze=False))
    for row in range(num):
        x, t, p = inputs[row, 0], targets[row, 0], preds[row, 0]
        err = np.abs(p - t)
        if two_d:
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            panels = [(x, None, None), (t, lo, hi), (p, lo, hi), (err, None, None)]
            for col, (field, vmin, vmax) in enumerate(panels):
                ax = axes[row, col]
                image = ax.imshow(field.T, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
                fig.colorbar(image, ax=ax, shrink=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
        else:
            grid = np.linspace(0, 1, t.shape[0])
            axes[row, 0].plot(np.linspace(0, 1, x.shape[0]), x)
            axes[row, 1].plot(grid, t, label="truth")
            axes[row, 1].plot(grid, p, "--", label="prediction")
            axes[row, 2].plot(grid, err)
            if row == 0:
                axes[row, 1].legend(fontsize="small")
        if row == 0:
            for col, title in enumerate(titles):
                axes[row, col].set_title(title)
    return _save(fig, path)


def plot_solution(
    points: ArrayLike,
    prediction: ArrayLike,
    reference: ArrayLike | None,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    num_slices: int = 3,
    inside: Callable | None = None,
) -> pathlib.Path:
    """Plots a field of coordinates next to its reference and the pointwise error.

    Columns: prediction / reference / |error| (the prediction alone without a reference).
    One-dimensional points give line plots; two-dimensional ones colour maps on the (possibly
    scattered) points; three-dimensional ones (e.g. `(x, y, t)` on a grid) one row per slice of
    the last coordinate at `num_slices` of its distinct values, first to last.

    **Arguments:**

    - `points`: `(n, dim)` coordinates, `dim` in 1..3.
    - `prediction`, `reference`: `(n,)` values; `reference` may be `None`.
    - `path`: output file.
    - `labels`: axis names (default `x0, x1, ...`).
    - `num_slices`: rows for three-dimensional points.
    - `inside`: for two or three dimensions, a function of `(m, 2)` plane points returning a
        boolean `(m,)`: triangles of the colour maps whose centre it rejects are left blank (a
        non-convex domain such as an L-shape is not filled across its notch).

    **Returns:** `path`.
    """
    pts = np.asarray(points, dtype=float)
    pred = np.asarray(prediction, dtype=float).reshape(-1)
    ref = None if reference is None else np.asarray(reference, dtype=float).reshape(-1)
    if (
        pts.ndim != 2
        or not 1 <= pts.shape[1] <= 3
        or len(pts) != len(pred)
        or (ref is not None and len(ref) != len(pred))
    ):
        raise ValueError(
            f"`plot_solution` needs points (n, 1..3) and n values, got points {pts.shape}, "
            f"prediction {pred.shape}, reference {None if ref is None else ref.shape}."
        )
    dim = pts.shape[1]
    labels = list(labels) if labels is not None else [f"x{i}" for i in range(dim)]
    if dim == 3:
        times = np.unique(pts[:, 2])
        chosen = times[np.linspace(0, len(times) - 1, min(num_slices, len(times))).astype(int)]
        rows = [(pts[:, 2] == t, f"{labels[2]} = {t:.3g}") for t in chosen]
    else:
        rows = [(np.ones(len(pts), bool), "")]
    columns = 1 if ref is None else 3
    fig = _figure((4 * columns, 3.4 * len(rows)))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    both = pred if ref is None else np.concatenate([pred, ref])
    lo, hi = float(both.min()), float(both.max())
    for (mask, title), ax_row in zip(rows, axes, strict=True):
        p = pred[mask]
        panels = [(p, "prediction", (lo, hi))]
        if ref is not None:
            r = ref[mask]
            panels += [(r, "reference", (lo, hi)), (np.abs(p - r), "|error|", (None, None))]
        if dim == 1:
            order = np.argsort(pts[mask, 0])
            x = pts[mask, 0][order]
            for ax, (values, name, _) in zip(ax_row, panels, strict=True):
                if name == "|error|":
                    ax.semilogy(x, np.maximum(values[order], 1e-300))
                else:
                    ax.plot(x, values[order], label=name)
                ax.set_xlabel(labels[0])
                ax.set_title(name)
        else:
            triangulation = _triangulation(pts[mask, 0], pts[mask, 1], inside)
            for ax, (values, name, scale) in zip(ax_row, panels, strict=True):
                image = ax.tripcolor(
                    triangulation, values, shading="gouraud", vmin=scale[0], vmax=scale[1]
                )
                fig.colorbar(image, ax=ax)
                ax.set_xlabel(labels[0])
                ax.set_ylabel(labels[1])
                ax.set_title(f"{name} {title}".strip())
    return _save(fig, path)


def _triangulation(x: np.ndarray, y: np.ndarray, inside: Callable | None):
    """The Delaunay triangulation of scattered plane points, without the triangles whose
    centre `inside` rejects."""
    from matplotlib.tri import Triangulation

    triangulation = Triangulation(x, y)
    if inside is not None:
        corners = triangulation.triangles
        centres = np.stack([x[corners].mean(axis=1), y[corners].mean(axis=1)], axis=1)
        triangulation.set_mask(~np.asarray(inside(centres), bool))
    return triangulation


def plot_calibration(
    levels: Sequence[float] | Float[ArrayLike, " levels"],
    coverages: Sequence[float] | Float[ArrayLike, " levels"],
    path: str | os.PathLike,
    *,
    num_test: int | None = None,
    title: str = "conformal calibration",
) -> pathlib.Path:
    """Writes a calibration plot (empirical vs nominal coverage, with the diagonal) to `path`.

    **Arguments:**

    - `levels`: nominal coverages.
    - `coverages`: the empirical coverages (e.g. from `calibration_curve`).
    - `path`: the image file (its folder is created); written atomically.
    - `num_test`: the number of test samples, shown in the legend.
    - `title`: the plot's title.

    **Returns:**

    The path written.
    """
    fig = _figure((4.2, 4.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="ideal")
    label = "test" if num_test is None else f"test ({num_test} samples)"
    ax.plot(list(levels), list(coverages), marker="o", label=label)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(fig, path)
