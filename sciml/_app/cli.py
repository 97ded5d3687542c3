"""The `sciml` command line: `sciml run CONFIG` and `sciml data RECIPE`.

Exit status: 0 on success, 2 for usage errors (bad arguments, config or input files), 1 for
failures while running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path

from .. import _signals
from .._catalogue import RECIPE_OPTIONS, RECIPES, get_recipe, recipes_with
from .._validate import ArgumentError

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class UsageError(Exception):
    """A mistake in the command line; reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block and exits itself; we want one line and our own exit.
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _flag_type(name: str, convert, ok, expected: str):
    """An argparse type: `convert(text)` where `ok` of it, else one line naming the argument."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{name} {text!r} is invalid: expected {expected}")
        return value

    return parse


def _int_at_least(name: str, minimum: int):
    return _flag_type(name, int, lambda v: v >= minimum, f"an integer >= {minimum}")


def _positive_int(name: str):
    return _int_at_least(name, 1)


def _positive_float(name: str):
    return _flag_type(name, float, lambda v: 0 < v < float("inf"), "a positive number")


def _nonnegative_int(name: str):
    return _int_at_least(name, 0)


_ALLOW_LARGE_HELP = (
    "run even if the estimated memory, disk or set-up time exceeds what this machine has "
    "(sizes JAX cannot index are refused anyway)"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sciml")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0"


def _file_arguments(parser: argparse.ArgumentParser, *, outputs: bool) -> None:
    """The flags naming the arrays of your own file and their layout."""
    group = parser.add_argument_group("your own file (default: as the run's own data)")
    group.add_argument("--inputs", metavar="KEY", help="name of the inputs array")
    if outputs:
        group.add_argument("--outputs", metavar="KEY", help="name of the outputs array")
    group.add_argument(
        "--channels",
        choices=("auto", "none", "first", "last"),
        help="how the arrays hold channels: none (n, *spatial), first (n, c, *spatial), last "
        "(n, *spatial, c), auto",
    )
    group.add_argument(
        "--stride", type=_positive_int("--stride"), help="take every stride-th point per axis"
    )


def _set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=10 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sciml", description="Differentiable scientific ML in JAX.")
    parser.add_argument("--version", action="version", version=f"sciml {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a model from a TOML config")
    run.add_argument("config", nargs="?", help="experiment config (TOML)")
    _set_argument(run)
    run.add_argument("--runs-dir", default="runs", help="parent of the run directory")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last complete checkpoint",
    )
    run.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="run the config for every combination of the values of all --sweep keys "
        "(repeatable; each value is read like a --set value, the list is split at top-level "
        "commas: 'model.modes=[8,8],[12,12]' is two values); the runs go into "
        "RUNS_DIR/NAME-sweep-TIME/ with summary.md, summary.csv and summary.json: mean, "
        "sample std, min and max of every final metric over the seeds",
    )
    run.add_argument(
        "--seeds",
        type=_positive_int("--seeds"),
        metavar="N",
        help="run each grid point (without --sweep: the config) with the seeds S, S+1, ..., "
        "S+N-1, S the config's seed (default: N = 1)",
    )
    run.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    # Without this, argparse would take `--seed 3` as an abbreviation of `--seeds 3`.
    run.add_argument("--seed", dest="seed_typo", help=argparse.SUPPRESS)

    ev = sub.add_parser(
        "eval",
        help="score a run's best model: on its own test data, on another file (--data), or on "
        "fresh samples of its recipe at any resolution",
    )
    ev.add_argument("run_dir", help="a directory written by 'sciml run'")
    ev.add_argument(
        "--data",
        metavar="FILE",
        help="score this file instead (e.g. the same problem at twice the resolution)",
    )
    _file_arguments(ev, outputs=True)
    fresh = ev.add_argument_group("fresh samples of the run's recipe (runs trained on a recipe)")
    fresh.add_argument(
        "--resolution",
        type=_positive_int("--resolution"),
        default=None,
        help="grid points per axis of the test data (default: the training resolution)",
    )
    fresh.add_argument("--n", type=_positive_int("--n"), default=None, help="test samples (100)")
    fresh.add_argument(
        "--seed",
        type=_nonnegative_int("--seed"),
        default=None,
        help="data seed (default 1000, distinct from the training data)",
    )
    ev.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)

    predict = sub.add_parser(
        "predict", help="write a run's predictions for the inputs of a file (.npz or .h5)"
    )
    predict.add_argument("run_dir", help="a directory written by 'sciml run'")
    predict.add_argument("--input", required=True, metavar="FILE", help="file of inputs")
    _file_arguments(predict, outputs=False)
    predict.add_argument(
        "--out", required=True, help="output .npz or .h5 file (array 'predictions')"
    )
    predict.add_argument(
        "--batch-size", type=_positive_int("--batch-size"), help="samples per batch"
    )
    predict.add_argument("--force", action="store_true", help="replace an existing --out file")
    predict.add_argument("--no-progress", action="store_true")

    export = sub.add_parser(
        "export",
        help="write a run's model as serialised StableHLO (jax.export), runnable with JAX "
        "alone for any batch size",
    )
    export.add_argument("run_dir", help="a directory written by 'sciml run'")
    export.add_argument("--out", required=True, metavar="FILE", help="output file (e.g. model.jax)")
    export.add_argument(
        "--sample-shape",
        type=_shape_argument,
        metavar="N,N,...",
        help="shape of one input sample (default: the training sample's, e.g. 1,85,85; "
        "a field's: its dimension)",
    )
    export.add_argument(
        "--platforms",
        type=_platforms_argument,
        metavar="P,P,...",
        help="platforms the file runs on, of cpu, cuda, rocm, tpu (default: this machine's)",
    )
    export.add_argument("--force", action="store_true", help="replace an existing --out file")

    config = sub.add_parser(
        "config", help="every config key with its default, allowed values and help"
    )
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    show = config_sub.add_parser(
        "show", help="list every key; with CONFIG, the values it resolves to"
    )
    show.add_argument("config", nargs="?", help="a TOML config")
    _set_argument(show)
    show.add_argument(
        "--kind", choices=("operator", "pinn"), default="operator", help="without CONFIG"
    )

    data = sub.add_parser(
        "data",
        help="generate a dataset file from a recipe, or import your own file (sciml data "
        "import SRC --inputs K --outputs K --out FILE.h5)",
    )
    data.add_argument(
        "recipe",
        choices=[*RECIPES, "import"],
        help="dataset recipe, or 'import' to convert your own file to sciml's checksummed format",
    )
    data.add_argument(
        "source", nargs="?", metavar="SRC", help="with 'import': your file (.npz, .npy, .mat, .h5)"
    )
    data.add_argument("--n", type=_positive_int("--n"), help="number of samples")
    _file_arguments(data, outputs=True)
    data.add_argument(
        "--resolution",
        type=_positive_int("--resolution"),
        help="grid points per axis ("
        + "; ".join(f"{r.name}: {r.resolution_help}" for r in RECIPES.values() if r.resolution_help)
        + ")",
    )
    data.add_argument("--seed", type=_nonnegative_int("--seed"), default=0)
    data.add_argument("--out", required=True, help="output .h5 file")
    data.add_argument("--chunk-size", type=_positive_int("--chunk-size"), default=None)
    data.add_argument("--force", action="store_true", help="replace an existing --out file")
    data.add_argument("--no-progress", action="store_true")
    data.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    options = data.add_argument_group("recipe options (default: the recipe's own)")
    for name, option in RECIPE_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        users = ", ".join(recipes_with(name))
        if option.type is bool:
            options.add_argument(
                flag, action="store_true", default=None, help=f"{option.help} ({users})"
            )
        else:
            parse = _positive_int if option.type is int else _positive_float
            options.add_argument(flag, type=parse(flag), help=f"{option.help} ({users})")
    return parser


def _run_and_report(config: dict, run_dir: Path, *, resume: bool) -> dict:
    """One run of a validated config, with the console report of `sciml run`."""
    from .experiment import run_experiment

    print(f"run directory: {run_dir}", flush=True)
    results = run_experiment(config, run_dir, resume=resume)
    print("final test metrics:")
    for k, v in results.items():
        print(f"  {k}: {v}")
    made = [
        n
        for n in ("results.json", "metrics.jsonl", "plots/", "checkpoints/")
        if (Path(run_dir) / n.rstrip("/")).exists()
    ]
    print(f"results in {run_dir}/ ({', '.join(made)})")
    return results


def _cmd_run(args) -> int:
    from .budget import check_run_budget
    from .config import ConfigError, load_config
    from .rundir import discard_unstarted, new_run_dir, resume_config

    if args.seed_typo is not None:
        raise UsageError(
            "sciml run: --seed is not an option; use --set seed=N for the seed, or --seeds N "
            "to repeat the run over N seeds"
        )
    if args.sweep or args.seeds is not None:
        return _cmd_sweep(args)
    if args.resume:
        run_dir = Path(args.resume)
        stored = run_dir / "config.toml"
        if not stored.is_file():
            raise UsageError(
                f"sciml run: --resume {str(run_dir)!r} is not a run directory "
                "(no config.toml in it)"
            )
        if args.config:
            raise UsageError("sciml run: give either CONFIG or --resume RUN_DIR, not both")
    elif not args.config:
        raise UsageError("sciml run: give a CONFIG file (or --resume RUN_DIR)")
    try:
        if args.resume:
            config = resume_config(run_dir, args.overrides)
        else:
            config = load_config(Path(args.config), args.overrides)
        # Sizes are checked against this machine before anything is allocated.
        check_run_budget(config, allow_large=args.allow_large)
    except ConfigError as e:
        raise UsageError(f"sciml run: {e}") from None
    # Every check above runs before the run directory exists; it is made (atomically) only now.
    resume = bool(args.resume)
    if not resume:
        run_dir = new_run_dir(Path(args.runs_dir), config["name"])

    from ..data import DatasetError
    from ..train import NonFiniteError

    try:
        try:
            _run_and_report(config, run_dir, resume=resume)
        except BaseException:
            # A start that failed before the first record or checkpoint leaves nothing behind.
            if not resume:
                discard_unstarted(run_dir)
            raise
    except _signals.Interrupted as e:
        if not run_dir.exists():
            what = "before training started; nothing was kept"
        else:
            what = f"resume it with: sciml run --resume {run_dir}"
        print(f"error: sciml run: {e}; completed files are intact; {what}", file=sys.stderr)
        return e.exit_status
    except (DatasetError, ConfigError) as e:
        raise UsageError(f"sciml run: {e}") from None
    except NonFiniteError as e:
        hint = (
            "raise train.max_rollbacks or lower train.learning_rate"
            if config["train"]["on_nonfinite"] == "rollback"
            else "lower train.learning_rate, or set train.on_nonfinite = 'rollback'"
        )
        print(f"error: sciml run: {e} ({hint})", file=sys.stderr)
        return RUNTIME_ERROR
    return 0


def _cmd_sweep(args) -> int:
    """`sciml run CONFIG --sweep ... --seeds N`: every grid point x seed as an ordinary run,
    then one summary table (see `sciml._sweep`)."""
    from . import sweep as _sweep

    if args.resume:
        raise UsageError(
            "sciml run: --sweep and --seeds cannot be combined with --resume; resume the runs "
            "of a sweep one at a time: sciml run --resume SWEEP_DIR/RUN"
        )
    if not args.config:
        raise UsageError("sciml run: give a CONFIG file to sweep")
    config_file = Path(args.config)
    try:
        runs = _sweep.plan_sweep(config_file, args.overrides, args.sweep, args.seeds or 1)
    except _sweep.SweepError as e:
        raise UsageError(f"sciml run: {e}") from None
    from .budget import check_run_budget
    from .config import ConfigError

    for run in runs:
        try:
            check_run_budget(run.config, allow_large=args.allow_large)
        except ConfigError as e:
            raise UsageError(f"sciml run: {run.name}: {e}") from None
    from .rundir import new_run_dir

    sweep_dir = new_run_dir(Path(args.runs_dir), f"{runs[0].config['name']}-sweep")
    print(f"sweep directory: {sweep_dir} ({len(runs)} runs)", flush=True)

    def run_one(config: dict, run_dir: Path) -> dict:
        import jax

        # A run may switch on float64 (PINN `train.float64`); the next starts as a fresh
        # process would.
        x64 = jax.config.jax_enable_x64
        try:
            return _run_and_report(config, run_dir, resume=False)
        finally:
            jax.config.update("jax_enable_x64", x64)

    header = _sweep.describe(config_file, args.overrides, runs)
    debug = bool(os.environ.get("SCIML_DEBUG"))
    table = _sweep.run_sweep(runs, sweep_dir, run_one, header, debug=debug)
    print()
    print(table, end="")
    print(f"summary in {sweep_dir}/ (summary.md, summary.csv, summary.json)")
    failed = sum(r.status == "failed" for r in runs)
    if failed:
        which = f"all {failed} runs" if failed == len(runs) else f"{failed} of {len(runs)} runs"
        print(
            f"error: sciml run: {which} failed (see the status column of "
            f"{sweep_dir / 'summary.md'})",
            file=sys.stderr,
        )
        return RUNTIME_ERROR
    return 0


def _cmd_eval(args) -> int:
    run_dir = _finished_run("sciml eval", args.run_dir)
    if args.resolution is not None and args.resolution < 3:
        raise UsageError(f"sciml eval: --resolution {args.resolution} is invalid: expected >= 3")
    if args.data is None:
        given = [f for f in _FILE_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"sciml eval: --{given[0]} names the arrays of a --data FILE; give it")
    import json

    from .._atomic import atomic_write_bytes
    from ..data import DatasetError
    from ..train import CorruptCheckpointError
    from .config import ConfigError
    from .operator_run import evaluate_run

    try:
        results = evaluate_run(
            run_dir,
            data=args.data,
            inputs=args.inputs,
            outputs=args.outputs,
            channels=args.channels,
            stride=args.stride,
            resolution=args.resolution,
            n=args.n,
            seed=args.seed,
            allow_large=args.allow_large,
        )
    except (ConfigError, CorruptCheckpointError, DatasetError) as e:
        raise UsageError(f"sciml eval: {e}") from None
    if args.data is not None:
        name = f"eval_{_sweep_slug(Path(args.data).stem)}.json"
    elif args.resolution is None and args.n is None and args.seed is None:
        name = "eval_test.json"
    else:
        name = f"eval_s{results['resolution']}_seed{results['seed']}.json"
    out = run_dir / name
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    for k, v in results.items():
        print(f"  {k}: {v}")
    print(f"written to {out}")
    return 0


def _sweep_slug(text: str) -> str:
    from .sweep import slug

    return slug(text) or "data"


def _check_out(command: str, out: Path, force: bool) -> None:
    if out.exists() and out.is_dir():
        raise UsageError(f"{command}: --out {str(out)!r} is a directory; give a file path")
    if out.exists() and not force:
        raise UsageError(
            f"{command}: --out {str(out)!r} already exists; pass --force to replace it"
        )


_FILE_FLAGS = ("inputs", "outputs", "channels", "stride")


def _cmd_data(args) -> int:
    out = Path(args.out)
    if args.recipe == "import":
        return _cmd_import(args, out)
    given = [f for f in _FILE_FLAGS if getattr(args, f) is not None]
    if args.source is not None or given:
        what = repr(args.source) if args.source is not None else f"--{given[0]}"
        raise UsageError(
            f"sciml data {args.recipe}: {what} applies to 'sciml data import SRC' only"
        )
    missing = [f for f in ("--n", "--resolution") if getattr(args, f[2:]) is None]
    if missing:
        raise UsageError(f"sciml data: the following arguments are required: {', '.join(missing)}")
    if out.exists() and not args.force:
        raise UsageError(
            f"sciml data: --out {str(out)!r} already exists; pass --force to replace it"
        )
    if out.exists() and out.is_dir():
        raise UsageError(f"sciml data: --out {str(out)!r} is a directory; give a file path")
    from ..data import make_dataset

    recipe = get_recipe(args.recipe)
    options = {}
    for name in RECIPE_OPTIONS:
        value = getattr(args, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name not in recipe.options:
            allowed = ", ".join("--" + o.replace("_", "-") for o in recipe.options)
            raise UsageError(
                f"sciml data: {flag} does not apply to the {recipe.name} recipe; its options: "
                f"{allowed}"
            )
        options[name] = value
    try:
        recipe.info(args.resolution, **options)
    except ValueError as e:
        # The recipe names the offending argument; report it as the flag.
        message = str(e)
        values = {"resolution": args.resolution, **options}
        argument = e.argument if isinstance(e, ArgumentError) else None
        named = [k for k in values if k == argument] or ["resolution"]
        flag = "--" + named[0].replace("_", "-")
        raise UsageError(
            f"sciml data {recipe.name}: {flag} {values[named[0]]} is invalid: {message}"
        ) from None
    from .budget import check_data_budget
    from .config import ConfigError

    try:
        check_data_budget(
            recipe.name,
            args.n,
            args.resolution,
            options,
            out,
            chunk_size=args.chunk_size,
            allow_large=args.allow_large,
        )
    except ConfigError as e:
        raise UsageError(f"sciml data {recipe.name}: {e}") from None

    checksum = make_dataset(
        recipe.name,
        out,
        n=args.n,
        resolution=args.resolution,
        seed=args.seed,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        **options,
    )
    print(f"wrote {args.n} samples to {out} (sha256 {checksum})")
    return 0


def _cmd_import(args, out: Path) -> int:
    if args.source is None:
        raise UsageError("sciml data import: give the file to import: sciml data import SRC ...")
    unused = [
        "--" + name.replace("_", "-")
        for name in ("n", "resolution", "chunk_size", *RECIPE_OPTIONS)
        if getattr(args, name) is not None
    ]
    if unused:
        raise UsageError(f"sciml data import: {unused[0]} applies to recipes, not to import")
    for flag in ("inputs", "outputs"):
        if not getattr(args, flag):
            raise UsageError(
                f"sciml data import: --{flag} is missing: name the {flag} array of {args.source!r}"
            )
    _check_out("sciml data import", out, args.force)
    from ..data import DatasetError, import_arrays

    try:
        checksum = import_arrays(
            args.source,
            out,
            inputs=args.inputs,
            outputs=args.outputs,
            channels=args.channels or "auto",
            stride=args.stride or 1,
            progress=not args.no_progress,
        )
    except DatasetError as e:
        raise UsageError(f"sciml data import: {e}") from None
    print(f"wrote {out} (sha256 {checksum})")
    return 0


def _cmd_predict(args) -> int:
    run_dir = _finished_run("sciml predict", args.run_dir)
    out = Path(args.out)
    _check_out("sciml predict", out, args.force)
    if out.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        raise UsageError(f"sciml predict: --out {str(out)!r} is invalid: give a .npz or .h5 file")
    from ..data import DatasetError
    from ..train import CorruptCheckpointError
    from .config import ConfigError
    from .operator_run import predict_file

    try:
        n = predict_file(
            run_dir,
            args.input,
            str(out),
            inputs=args.inputs,
            channels=args.channels,
            stride=args.stride,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (ConfigError, CorruptCheckpointError, DatasetError) as e:
        raise UsageError(f"sciml predict: {e}") from None
    print(f"wrote {n} predictions to {out}")
    return 0


def _shape_argument(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(
            f"--sample-shape {text!r} is invalid: expected positive sizes separated by commas, "
            "e.g. 1,64,64"
        )
    return shape


def _platforms_argument(text: str) -> tuple[str, ...]:
    from .._export import PLATFORMS

    platforms = tuple(p.strip() for p in text.split(","))
    if not platforms or any(p not in PLATFORMS for p in platforms):
        raise argparse.ArgumentTypeError(
            f"--platforms {text!r} is invalid: expected some of {', '.join(PLATFORMS)}, "
            "separated by commas"
        )
    return platforms


def _cmd_export(args) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UsageError(f"sciml export: {str(run_dir)!r} is not a run directory (no config.toml)")
    out = Path(args.out)
    _check_out("sciml export", out, args.force)
    from ..train import CorruptCheckpointError
    from .config import ConfigError
    from .export import export_run

    try:
        info = export_run(run_dir, out, sample_shape=args.sample_shape, platforms=args.platforms)
    except (ConfigError, CorruptCheckpointError) as e:
        raise UsageError(f"sciml export: {e}") from None
    shape = lambda a: f"({', '.join(a['shape'])}) {a['dtype']}"
    print(f"wrote {out} (and {out}.json) for {', '.join(info['platforms'])}")
    print(f"  input:  {', '.join(shape(a) for a in info['inputs'])}")
    print(f"  output: {', '.join(shape(a) for a in info['outputs'])}")
    print(f"  use it with JAX alone: {info['usage']}")
    return 0


def _cmd_config(args) -> int:
    from .config import PINN_SCHEMA, SCHEMA, ConfigError, describe_schema, load_config

    if args.config is None:
        if args.overrides:
            raise UsageError("sciml config show: --set needs a CONFIG")
        print(describe_schema(PINN_SCHEMA if args.kind == "pinn" else SCHEMA))
        return 0
    try:
        config = load_config(Path(args.config), args.overrides)
    except ConfigError as e:
        raise UsageError(f"sciml config show: {e}") from None
    schema = PINN_SCHEMA if config.get("kind") == "pinn" else SCHEMA
    print(describe_schema(schema, config))
    return 0


def _finished_run(command: str, run_dir: str) -> Path:
    run_dir = Path(run_dir)
    for name in ("config.toml", "best_model.eqx"):
        if not (run_dir / name).is_file():
            raise UsageError(
                f"{command}: {str(run_dir)!r} is not a finished run directory (no {name})"
            )
    return run_dir


@contextlib.contextmanager
def _one_line_warnings():
    # A warning of a command is one line, without the source line `warnings` adds.
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"warning: {_one_line(message)}\n"
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sciml` console script.

    SIGINT and SIGTERM stop a command promptly in every phase with one line and exit status
    130 / 143 (see `sciml._signals`); completed files stay intact, and a run can be resumed.
    """
    with _signals.handled(), _one_line_warnings():
        try:
            status = _main(argv)
        except _signals.Interrupted as e:
            print(f"error: {e}; completed files are intact", file=sys.stderr)
            return e.exit_status
        except KeyboardInterrupt:  # raised by other means than our handlers
            print("error: interrupted; completed files are intact", file=sys.stderr)
            return 130
        signum = _signals.pending()
        if signum is not None and status != 128 + signum:
            # A signal that arrived where it could not be raised, after the last check.
            error = _signals.Interrupted(signum)
            print(f"error: {error}; completed files are intact", file=sys.stderr)
            return error.exit_status
        return status


def _main(argv: list[str] | None) -> int:
    from .._atomic import StorageError

    try:
        args = _parser().parse_args(argv)
        commands = {
            "run": _cmd_run,
            "eval": _cmd_eval,
            "data": _cmd_data,
            "predict": _cmd_predict,
            "export": _cmd_export,
            "config": _cmd_config,
        }
        return commands[args.command](args)
    except UsageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:  # the reader went away (`sciml config show | head`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes it at exit)
        return 0
    except StorageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return RUNTIME_ERROR
    except Exception as e:
        if os.environ.get("SCIML_DEBUG"):
            raise
        print(
            f"error: {type(e).__name__}: {_one_line(e)} (set SCIML_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return RUNTIME_ERROR


def _one_line(error: BaseException | Warning | str) -> str:
    # An error is reported in one line on stderr, whatever text an exception carries.
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
