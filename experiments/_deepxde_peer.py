"""DeepXDE peer for the side-by-side PINN benchmark (standalone; NOT part of ``sciml``).

This script runs inside its own virtualenv ``.venv-deepxde`` (git-ignored via
``.venv-*/``) and imports only deepxde, numpy, the stdlib and the DeepXDE backend.
DeepXDE must never become a dependency of the ``sciml`` package.

Setup (from the repository root; pinned to the versions this script was tested with,
jax/jaxlib match ``.venv``)::

    python3 -m venv .venv-deepxde
    .venv-deepxde/bin/pip install --upgrade pip
    .venv-deepxde/bin/pip install deepxde==1.15.0 jax==0.10.2 jaxlib==0.10.2 \
        flax==0.12.8 optax==0.2.8 numpy==2.4.6

    (this pulls scipy 1.17.1, scikit-learn 1.9.1, scikit-optimize 0.10.2 and
    matplotlib 3.11.2 as DeepXDE's own requirements; on a CUDA machine use
    ``jax[cuda12]==0.10.2`` instead of ``jax==0.10.2 jaxlib==0.10.2``.)

Backend: JAX only (``DDE_BACKEND=jax``; set by this script when unset, any other
backend is refused).  "Glorot normal" is ``jax.nn.initializers.glorot_normal()``
(truncated normal, fan_avg) for the kernels, zero biases; seeded by ``--seed`` via
``dde.config.set_random_seed``.
DeepXDE 1.15.0's JAX backend supports Adam/SGD/RMSprop (optax) only -- it has no
L-BFGS (``optimizers.jax.is_external_optimizer`` always returns False).  Second
derivatives come from ``dde.grad.hessian`` (per-point ``jax.grad`` of ``jax.grad``,
``jax.vmap``-ed over the batch).

Usage::

    .venv-deepxde/bin/python experiments/_deepxde_peer.py \
        --problem poisson|helmholtz --steps N --width W --depth D \
        --num-domain N_r --num-boundary N_b --lr LR --seed S \
        --points-file PATH.npz --out RESULT.json

``--points-file`` is an ``.npz`` holding ``interior`` (N_r, 2), ``boundary`` (N_b, 2),
``test`` (N_t, 2) and ``test_u`` (N_t,).  ``--num-domain``/``--num-boundary`` are only
checked against the array shapes (all points come from the file; nothing is sampled).

How the fixed points are fed to DeepXDE (so that the loss is exactly
``mean(r_pde(interior)^2) + mean(u(boundary)^2)``, weights 1 and 1):

* ``dde.data.PDE(geom, pde, [bc], num_domain=0, num_boundary=0, anchors=interior)``:
  with no sampled points, ``train_x_all`` (the PDE residual set) is exactly the
  anchors, i.e. the interior points only.  (Passing the boundary points as anchors,
  or using ``num_boundary>0``, would put them in the PDE residual set too, because
  DeepXDE uses ``train_x_all`` -- domain + boundary + anchors -- for the PDE loss.)
* The zero Dirichlet condition is a ``dde.icbc.PointSetBC(boundary, 0)``, whose
  collocation points are exactly the given boundary points.  (A ``DirichletBC``
  would instead select the points of ``train_x_all`` lying on the boundary.)
* The network input per step is ``vstack(boundary, interior)``; DeepXDE evaluates the
  PDE residual on ALL of it and slices off the boundary rows before the PDE loss, so
  the PDE loss is on interior points only, but the residual (incl. the Hessian) is
  also computed -- and discarded -- on the N_b boundary rows.  That is DeepXDE's
  normal cost and is included in the timing.
* No resampling: ``PDE.train_next_batch`` is cached (``run_if_all_none``) and no
  ``PDEPointResampler`` callback is used, so every step is full-batch on the same
  points.  ``num_test=None`` so DeepXDE's own "test" losses reuse the training points
  (evaluated only at the start and end of ``model.train`` as ``display_every`` is
  larger than ``--steps``).  The reported error is computed separately with
  ``model.predict`` on the file's ``test`` points.

Timing: ``model.train(iterations=1)`` is run first as warm-up (XLA compilation of
DeepXDE's jitted train step and loss functions; ``warmup_time_s``), then parameters
and optimiser state are reset to their initial values and ``model.train(iterations=
steps)`` is timed (``train_time_s``).  The timed region therefore contains exactly
``steps`` Adam steps from the same initialisation plus DeepXDE's two loss
evaluations at the start and end of ``train``; it ends with a host transfer of the
losses, so all device work is finished.

Output JSON: library, backend, versions, problem, steps, width, depth, n_interior,
n_boundary, n_test, lr, seed, train_time_s, warmup_time_s, steps_per_s, rel_l2,
final_loss, final_loss_terms ([pde, bc]).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time

import numpy as np

os.environ.setdefault("DDE_BACKEND", "jax")

PI = math.pi
HELMHOLTZ_A1, HELMHOLTZ_A2, HELMHOLTZ_K = 1.0, 4.0, 1.0
SUMMARY_KEYS = (
    "problem",
    "backend",
    "steps",
    "train_time_s",
    "warmup_time_s",
    "steps_per_s",
    "rel_l2",
    "final_loss",
)


def exact_solution(problem: str, x: np.ndarray) -> np.ndarray:
    if problem == "poisson":
        return np.sin(PI * x[:, 0]) * np.sin(PI * x[:, 1])
    if problem == "helmholtz":
        return np.sin(HELMHOLTZ_A1 * PI * x[:, 0]) * np.sin(HELMHOLTZ_A2 * PI * x[:, 1])
    raise ValueError(problem)


def _u(y):
    """JAX backend passes (outputs, apply_fn) tuples; the other backends pass the tensor."""
    return y[0] if isinstance(y, (tuple, list)) else y


def build_model(dde, problem, interior, boundary, width, depth, lr):
    """The compiled ``dde.Model``: PDE loss on ``interior`` only, u=0 on ``boundary`` only."""
    from deepxde import backend as bkd

    def pde(x, y):
        # Fresh derivative cache per trace (DeepXDE's JAX path never clears it).
        dde.grad.clear()
        # (JAX backend: hessian returns (values, fn) -- take the values.)
        u_xx = _u(dde.grad.hessian(y, x, i=0, j=0))
        u_yy = _u(dde.grad.hessian(y, x, i=1, j=1))
        xs, ys = x[:, 0:1], x[:, 1:2]
        if problem == "poisson":
            # -Lap u = f,  f = 2 pi^2 sin(pi x) sin(pi y)
            f = 2.0 * PI**2 * bkd.sin(PI * xs) * bkd.sin(PI * ys)
            return -u_xx - u_yy - f
        # u_xx + u_yy + k^2 u = q
        a1, a2, k = HELMHOLTZ_A1, HELMHOLTZ_A2, HELMHOLTZ_K
        q = (
            (-((a1 * PI) ** 2) - (a2 * PI) ** 2 + k**2)
            * bkd.sin(a1 * PI * xs)
            * bkd.sin(a2 * PI * ys)
        )
        return u_xx + u_yy + k**2 * _u(y) - q

    geom = dde.geometry.Rectangle([-1.0, -1.0], [1.0, 1.0])
    bc = dde.icbc.PointSetBC(boundary, np.zeros((boundary.shape[0], 1), dtype=np.float32))
    data = dde.data.PDE(geom, pde, [bc], num_domain=0, num_boundary=0, anchors=interior)
    # Sanity: PDE residual set == interior points, BC set == boundary points.
    assert data.train_x_all.shape == interior.shape and np.array_equal(data.train_x_all, interior)
    assert data.num_bcs == [boundary.shape[0]] and np.array_equal(data.train_x_bc, boundary)

    net = dde.nn.FNN([2] + [width] * depth + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=lr, loss="MSE")

    return model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problem", choices=["poisson", "helmholtz"], required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--width", type=int, default=50)
    p.add_argument("--depth", type=int, default=3, help="number of hidden layers")
    p.add_argument("--num-domain", type=int, default=None)
    p.add_argument("--num-boundary", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points-file", required=True)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # DeepXDE prints banners/progress to stdout; send them to stderr so that stdout
    # carries only the one-line JSON summary.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args)
    print(json.dumps({k: result[k] for k in SUMMARY_KEYS}))
    return result


def run(args) -> dict:
    import deepxde as dde

    backend = dde.backend.backend_name
    if backend != "jax":
        raise SystemExit(f"only DeepXDE's JAX backend is supported here (got {backend!r})")
    dde.config.set_default_float("float32")
    dde.config.set_random_seed(args.seed)

    pts = np.load(args.points_file)
    interior = np.asarray(pts["interior"], dtype=np.float32)
    boundary = np.asarray(pts["boundary"], dtype=np.float32)
    test_x = np.asarray(pts["test"], dtype=np.float32)
    test_u = np.asarray(pts["test_u"], dtype=np.float64).reshape(-1)
    checks = (("interior", interior, args.num_domain), ("boundary", boundary, args.num_boundary))
    for name, arr, n in checks:
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {arr.shape}")
        if n is not None and arr.shape[0] != n:
            raise ValueError(
                f"--num-{'domain' if name == 'interior' else 'boundary'}={n} "
                f"but the points file has {arr.shape[0]} {name} points"
            )

    problem = args.problem
    mismatch = float(np.max(np.abs(exact_solution(problem, test_x.astype(np.float64)) - test_u)))
    if mismatch > 1e-4:
        print(
            f"WARNING: test_u differs from the {problem} exact solution by up to {mismatch:.3g}",
            file=sys.stderr,
        )
    model = build_model(dde, problem, interior, boundary, args.width, args.depth, args.lr)

    import jax

    quiet = dict(display_every=10**9, verbose=0)
    init_params, init_opt_state = model.params, model.opt_state
    t0 = time.perf_counter()
    model.train(iterations=1, **quiet)
    jax.block_until_ready(model.params)
    warmup = time.perf_counter() - t0
    # Reset to the initial state so the timed run is `steps` steps from init.
    model.params, model.opt_state = init_params, init_opt_state
    model.net.params = init_params[0]
    model.train_state = type(model.train_state)()
    model.losshistory = type(model.losshistory)()
    t0 = time.perf_counter()
    model.train(iterations=args.steps, **quiet)
    jax.block_until_ready(model.params)
    train_time = time.perf_counter() - t0

    loss_terms = [float(v) for v in np.asarray(model.train_state.loss_train).reshape(-1)]
    pred = np.asarray(model.predict(test_x), dtype=np.float64).reshape(-1)
    rel_l2 = float(np.linalg.norm(pred - test_u) / np.linalg.norm(test_u))

    versions = {
        "deepxde": dde.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    import flax
    import jaxlib
    import optax

    versions.update(
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        flax=flax.__version__,
        optax=optax.__version__,
        jax_device=str(jax.devices()[0]),
    )
    result = {
        "library": "deepxde",
        "backend": backend,
        "versions": versions,
        "problem": problem,
        "steps": args.steps,
        "width": args.width,
        "depth": args.depth,
        "n_interior": int(interior.shape[0]),
        "n_boundary": int(boundary.shape[0]),
        "n_test": int(test_x.shape[0]),
        "lr": args.lr,
        "seed": args.seed,
        "train_time_s": train_time,
        "warmup_time_s": warmup,
        "steps_per_s": args.steps / train_time if train_time > 0 else float("nan"),
        "rel_l2": rel_l2,
        "final_loss": float(sum(loss_terms)),
        "final_loss_terms": loss_terms,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
