"""Train-step speed of `sciml.operators.FNO` (JAX) against `neuraloperator`'s FNO (PyTorch).

Both models have the FNO-paper Darcy architecture and the same number of real parameters:
grid features (2 channels) -> linear lifting to `width` -> `depth` Fourier layers
`act(K x + W x + b)` (no activation after the last) -> `width -> 128 -> 1` projection MLP, with
modes 0..11 and -12..-1 kept along the first axis and 0..11 along the last (rfft) axis.

A train step is forward + backward + Adam update (MSE loss, lr 1e-3) on one batch. The two
frameworks are timed alternately, step by step, in this one process, so that load on a shared
machine affects both alike; the medians over `--steps` timed steps after warm-up are reported.

Runs in the benchmark venv (the peer is never a dependency of sciml):

    .venv-bench/bin/python experiments/bench_fno_speed.py --resolution 85 --batch 20

Threads: XLA on CPU uses all cores available to the process; PyTorch is given the same number
of intra-op threads (`torch.set_num_threads`). `--threads N` pins the process to N cores first.
"""

import argparse
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=85)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument(
        "--padding",
        type=int,
        default=0,
        help="extra grid points per axis before the Fourier layers (even): sciml pads them at "
        "the end, neuraloperator (symmetric padding only) half on each side",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="pin the process to this many cores (XLA sizes its pool by them) and give torch as "
        "many intra-op threads; default: all cores",
    )
    parser.add_argument("--only", choices=("both", "sciml", "neuralop"), default="both")
    return parser.parse_args()


args = parse_args()
if args.threads is not None:
    # Pin this process to `--threads` cores before JAX starts, so that XLA's CPU thread pool
    # and PyTorch's intra-op pool have the same size.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
if args.device == "cpu":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
if args.padding % 2:
    raise SystemExit(
        f"--padding must be even (neuraloperator pads symmetrically), got {args.padding}"
    )

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from neuralop.models import FNO as TorchFNO  # noqa: E402

from sciml.operators import FNO  # noqa: E402


def exact_gelu(x):
    # torch.nn.functional.gelu is the exact (erf) GELU, as in the FNO paper's code.
    return jax.nn.gelu(x, approximate=False)


def build_sciml(key):
    model = FNO(
        1,
        1,
        modes=(args.modes, args.modes),
        width=args.width,
        depth=args.depth,
        activation=exact_gelu,
        grid_features=True,
        padding=args.padding,
        lifting_channels=None,
        projection_channels=128,
        key=key,
        dtype=jnp.float32,
    )
    optim = optax.adam(1e-3)
    opt_state = optim.init(eqx.filter(model, eqx.is_array))
    params, static = eqx.partition(model, eqx.is_array)

    def loss_fn(params, x, y):
        pred = jax.vmap(eqx.combine(params, static))(x)
        return jnp.mean((pred - y) ** 2)

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optim.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    n_params = sum(a.size for a in jax.tree.leaves(params))
    return params, opt_state, step, n_params


def build_torch(device):
    s, p = args.resolution, args.padding
    model = TorchFNO(
        # n_modes counts modes centred on zero: 2m along the first axis keeps -m..m-1;
        # 2m - 1 along the last keeps (2m - 1) // 2 + 1 = m rfft modes 0..m-1.
        n_modes=(2 * args.modes, 2 * args.modes - 1),
        in_channels=1,
        out_channels=1,
        hidden_channels=args.width,
        n_layers=args.depth,
        lifting_channel_ratio=0,  # one linear lifting layer, as in the paper
        projection_channel_ratio=128 / args.width,  # width -> 128 -> 1
        positional_embedding="grid",
        non_linearity=F.gelu,
        norm=None,
        use_channel_mlp=False,  # the paper's layer has no channel MLP
        fno_skip="linear",  # W x (no bias; the spectral conv's bias gives + b)
        domain_padding=(p // 2) / s if p else None,
        factorization=None,  # dense complex weights
        fno_block_precision="full",
        preactivation=False,
    ).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        optim.zero_grad(set_to_none=True)
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        optim.step()
        return loss

    n_params = sum(q.numel() * (2 if q.is_complex() else 1) for q in model.parameters())
    return model, step, n_params


def main():
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if args.device == "gpu":
        torch_device = torch.device("cuda")
        jax_device = jax.devices("gpu")[0]
    else:
        torch_device = torch.device("cpu")
        jax_device = jax.devices("cpu")[0]

    rng = np.random.default_rng(0)
    shape = (args.batch, 1, args.resolution, args.resolution)
    x_np = rng.standard_normal(shape, dtype=np.float32)
    y_np = rng.standard_normal(shape, dtype=np.float32)

    with jax.default_device(jax_device):
        params, opt_state, jax_step, n_sciml = build_sciml(jax.random.key(0))
        x_j, y_j = jax.device_put(x_np, jax_device), jax.device_put(y_np, jax_device)
    _, torch_step, n_torch = build_torch(torch_device)
    x_t, y_t = torch.from_numpy(x_np).to(torch_device), torch.from_numpy(y_np).to(torch_device)

    print(f"sciml params: {n_sciml:,}  neuraloperator params (complex counted as 2): {n_torch:,}")
    assert n_sciml == n_torch, (n_sciml, n_torch)

    def sync_torch():
        if args.device == "gpu":
            torch.cuda.synchronize()

    def run_jax():
        nonlocal params, opt_state
        t0 = time.perf_counter()
        params, opt_state, loss = jax_step(params, opt_state, x_j, y_j)
        jax.block_until_ready((params, opt_state, loss))
        return time.perf_counter() - t0

    def run_torch():
        t0 = time.perf_counter()
        loss = torch_step(x_t, y_t)
        loss.item()
        sync_torch()
        return time.perf_counter() - t0

    runners = {"sciml (JAX)": run_jax, "neuraloperator (PyTorch)": run_torch}
    if args.only == "sciml":
        runners.pop("neuraloperator (PyTorch)")
    elif args.only == "neuralop":
        runners.pop("sciml (JAX)")
    for run in runners.values():
        for _ in range(args.warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(args.steps):
        for name, run in runners.items():
            times[name].append(run())

    params_of = {"sciml (JAX)": n_sciml, "neuraloperator (PyTorch)": n_torch}
    medians = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    ref = medians.get("neuraloperator (PyTorch)")
    print(
        f"\ns={args.resolution}, batch={args.batch}, modes={args.modes}, width={args.width}, "
        f"depth={args.depth}, padding={args.padding}, device={args.device}, threads={threads}, "
        f"jax {jax.__version__}, torch {torch.__version__}, {args.steps} timed steps\n"
    )
    print("| framework | params | median step (ms) | IQR (ms) | speed-up vs neuraloperator |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        q1, q3 = np.percentile(np.array(t) * 1e3, [25, 75])
        ratio = f"{ref / medians[name]:.2f}x" if ref else "-"
        print(f"| {name} | {params_of[name]:,} | {medians[name]:.1f} | {q3 - q1:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
