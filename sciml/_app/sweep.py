"""`sciml run CONFIG --sweep KEY=V1,V2 --seeds N`: a grid of ordinary runs and one summary table.

The grid is the Cartesian product of every `--sweep` list (the last key varies fastest), each
point repeated with the seeds `seed, seed + 1, ..., seed + N - 1` (config key `seed`, after
`--set`). Every (point, seed) is a complete config, loaded and validated by
`sciml._config.load_config` before the first run starts, and run by the same code as a single
`sciml run`, into `SWEEP_DIR/<name>-<key>=<value>-...-seed<k>/`. The sweep directory also holds
`summary.md`, `summary.csv` and `summary.json`: per grid point and final metric, the mean, the
sample standard deviation, min, max and number of values over the seeds. They are rewritten after
every run, so an interrupted sweep keeps a summary of what finished; `summary.json` lists each
run's overrides and status.

Everything but `plan_sweep` (config loading) and `run_sweep` (running) is a pure function of
its arguments, without JAX.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import re
import statistics
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_bytes

_OPEN, _CLOSE = "[{(", "]})"


class SweepError(ValueError):
    """A mistake in `--sweep` / `--seeds`, found before any run starts; the message is one
    line naming the argument."""


@dataclass(frozen=True)
class Sweep:
    """One `--sweep KEY=V1,V2,...` argument: the dotted key and the value texts, as given."""

    arg: str
    key: str
    values: tuple[str, ...]


@dataclass
class Run:
    """One (grid point, seed) of a sweep: its validated config and, once run, its outcome."""

    point: int  # index of the grid point (row of the summary)
    values: dict[str, str]  # swept key -> value text, as given
    seed: int
    overrides: list[str]  # `--set` overrides of this run beyond the sweep's own `--set`
    config: dict
    name: str = ""  # run directory, relative to the sweep directory
    status: str = "pending"  # "ok", "failed", "interrupted"
    error: str | None = None
    results: dict | None = field(default=None, repr=False)


def split_values(text: str) -> list[str]:
    """Splits `text` at its top-level commas: not inside `[...]`, `{...}`, `(...)` or quotes.

    `"[12,12],[16,16]"` gives `["[12,12]", "[16,16]"]`; items are stripped of blanks. Raises
    `ValueError` on unbalanced brackets or an unterminated quote.
    """
    items, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':  # TOML basic strings have escapes, literal ones not
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {c!r}")
        elif c == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quote:
        raise ValueError(f"unterminated {quote} quote")
    if depth:
        raise ValueError("unbalanced brackets")
    items.append(text[start:].strip())
    return items


def parse_sweep(arg: str) -> Sweep:
    """Parses one `--sweep KEY=V1,V2,...` argument (values stay text: `load_config` reads each
    as a TOML value, exactly like a `--set` value)."""
    if "=" not in arg:
        raise SweepError(
            f"--sweep {arg!r} is invalid: expected KEY=V1,V2,..., e.g. model.width=32,64"
        )
    key, text = arg.split("=", 1)
    key = key.strip()
    if not key or not all(part.strip() == part and part for part in key.split(".")):
        raise SweepError(f"--sweep {arg!r} is invalid: expected a dotted config key before '='")
    if not text.strip():
        raise SweepError(f"--sweep {arg!r} is invalid: give at least one value after '='")
    try:
        values = split_values(text)
    except ValueError as e:
        raise SweepError(f"--sweep {arg!r} is invalid: {e} in the values") from None
    if not all(values):
        raise SweepError(
            f"--sweep {arg!r} is invalid: empty value in the list (values are separated by "
            "single commas)"
        )
    return Sweep(arg, key, tuple(values))


def _related(a: str, b: str) -> bool:
    """Whether dotted keys `a` and `b` name the same value or one holds the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def check_sweeps(sweeps: Sequence[Sweep], set_keys: Sequence[tuple[str, str]]) -> None:
    """Usage errors among the `--sweep` arguments: a repeated key, a key also given with
    `--set` (`set_keys` holds `(key, override text)` pairs), or the seed itself."""
    for i, sweep in enumerate(sweeps):
        if sweep.key == "seed":
            raise SweepError(
                f"--sweep {sweep.arg!r} is not allowed: use --seeds N for the seeds "
                "seed, seed + 1, ..., seed + N - 1 (and --set seed=S for the first)"
            )
        for earlier in sweeps[:i]:
            if _related(sweep.key, earlier.key):
                raise SweepError(
                    f"--sweep {sweep.arg!r} repeats the key of --sweep {earlier.arg!r}; give "
                    "all values of a key in one --sweep KEY=V1,V2,..."
                )
        for key, text in set_keys:
            if _related(sweep.key, key):
                raise SweepError(
                    f"--sweep {sweep.arg!r} conflicts with --set {text!r}: a key is either "
                    "swept or set, not both"
                )


def expand_grid(sweeps: Sequence[Sweep]) -> list[dict[str, str]]:
    """The Cartesian product of the sweeps' values, `{key: value text}` per point, in the
    order of the arguments with the last key varying fastest; `[{}]` without sweeps."""
    keys = [s.key for s in sweeps]
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(s.values for s in sweeps))
    ]


def display(value: Any) -> str:
    """A config value as short text: TOML-like (`true`, `[4, 4]`), strings unquoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(display(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {display(v)}" for k, v in value.items()) + "}"
    return str(value)


def slug(text: str, max_length: int = 40) -> str:
    """`text` as part of a directory name: runs of characters other than letters, digits and
    `. _ + -` become one `_` (`[4, 4]` -> `4_4`), cut to `max_length`."""
    out = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:max_length]
    return out or "_"


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The last component of each dotted key where that is unambiguous, else the whole key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def run_names(name: str, runs: Sequence[Run]) -> list[str]:
    """Readable, distinct directory names: `<name>-<key>=<value>-...-seed<k>`."""
    shorts = short_keys(list(runs[0].values)) if runs else {}
    names, taken = [], set()
    for run in runs:
        parts = [name, *(f"{shorts[k]}={slug(display(v))}" for k, v in _swept(run).items())]
        base = "-".join([*parts, f"seed{run.seed}"])
        candidate, suffix = base, 1
        while candidate in taken:
            suffix += 1
            candidate = f"{base}-{suffix}"
        taken.add(candidate)
        names.append(candidate)
    return names


def lookup(config: dict, key: str) -> Any:
    """The value of a dotted key in a (validated) config."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _swept(run: Run) -> dict[str, Any]:
    """The swept keys of a run with their validated values."""
    return {k: lookup(run.config, k) for k in run.values}


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def aggregate(results: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per metric of the `results` dicts (in order of first appearance): mean, sample standard
    deviation (`None` below two values), min, max and the number `n` of numeric values
    (`None`, text and non-finite values are left out)."""
    names = list(dict.fromkeys(k for r in results for k in r))
    stats = {}
    for name in names:
        xs = [r[name] for r in results if _is_number(r.get(name))]
        stats[name] = {
            "mean": statistics.fmean(xs) if xs else None,
            "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "min": min(xs) if xs else None,
            "max": max(xs) if xs else None,
            "n": len(xs),
        }
    return stats


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """The summary of a sweep: one row per grid point (in grid order) with its swept values,
    run counts, status and `aggregate` of the finished runs' results."""
    rows = []
    for _, group in itertools.groupby(sorted(runs, key=lambda r: r.point), key=lambda r: r.point):
        group = list(group)
        done = [r for r in group if r.status == "ok"]
        failed = [r for r in group if r.status == "failed"]
        unfinished = len(group) - len(done) - len(failed)
        if failed:
            status = f"{len(failed)} failed: {failed[0].error}"
        elif unfinished:
            status = "pending" if not done else f"{unfinished} pending"
        else:
            status = "ok"
        rows.append(
            {
                "point": _swept(group[0]),
                "runs": len(group),
                "ok": len(done),
                "failed": len(failed),
                "status": status,
                "metrics": aggregate([r.results for r in done]),
            }
        )
    metrics = list(dict.fromkeys(m for row in rows for m in row["metrics"]))
    return {"keys": list(runs[0].values) if runs else [], "metrics": metrics, "rows": rows}


def _number(x: float | None, digits: int) -> str:
    if x is None:
        return ""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}"


def _cell(stats: dict[str, Any] | None, ok: int) -> str:
    if not stats or stats["n"] == 0:
        return "–"
    text = _number(stats["mean"], 4)
    if stats["std"] is not None:
        text += f" ± {_number(stats['std'], 2)}"
    if stats["n"] != ok:
        text += f" (n={stats['n']})"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(summary: dict[str, Any]) -> str:
    """A Markdown table: the swept values, `n` (finished / all runs of the point), each
    metric as `mean ± sample std` over the seeds, and the status."""
    header = [*summary["keys"], "n", *summary["metrics"], "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in summary["rows"]:
        cells = [display(row["point"][k]) for k in summary["keys"]]
        cells.append(f"{row['ok']}/{row['runs']}")
        cells += [_cell(row["metrics"].get(m), row["ok"]) for m in summary["metrics"]]
        cells.append(row["status"])
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


_STATS = ("mean", "std", "min", "max", "n")


def format_csv(summary: dict[str, Any]) -> str:
    """One CSV row per grid point: swept values, run counts, status, and for every metric
    `<metric>_mean`, `_std`, `_min`, `_max`, `_n` (full precision; empty where undefined)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [*summary["keys"], "runs", "ok", "failed", "status"]
    header += [f"{m}_{s}" for m in summary["metrics"] for s in _STATS]
    writer.writerow(header)
    for row in summary["rows"]:
        cells = [display(row["point"][k]) for k in summary["keys"]]
        cells += [row["runs"], row["ok"], row["failed"], row["status"]]
        for m in summary["metrics"]:
            stats = row["metrics"].get(m, {})
            cells += ["" if stats.get(s) is None else repr(stats[s]) for s in _STATS]
        writer.writerow(cells)
    return out.getvalue()


def write_summary(sweep_dir: Path, runs: Sequence[Run], header: dict[str, Any]) -> str:
    """Writes `summary.md`, `summary.csv` and `summary.json` (atomically); returns the
    Markdown table."""
    summary = summarize(runs)
    table = format_markdown(summary)
    document = {
        **header,
        **summary,
        "runs": [
            {
                "name": r.name,
                "point": _swept(r),
                "seed": r.seed,
                "overrides": r.overrides,
                "status": r.status,
                "error": r.error,
                "results": r.results,
            }
            for r in runs
        ],
    }
    seeds = ", ".join(str(s) for s in header["seeds"])
    markdown = (
        f"# Sweep of {header['config']}\n\nMean ± sample standard deviation over the seeds "
        f"{seeds} (min, max in summary.csv); n: finished / all runs.\n\n{table}"
    )
    atomic_write_bytes(sweep_dir / "summary.md", markdown.encode())
    atomic_write_bytes(sweep_dir / "summary.csv", format_csv(summary).encode())
    atomic_write_bytes(sweep_dir / "summary.json", (json.dumps(document, indent=2) + "\n").encode())
    return table


def one_line(error: BaseException, max_length: int = 300) -> str:
    """`Type: first line of the message`, for the summary."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= max_length else text[: max_length - 3] + "..."


def plan_sweep(
    config_file: str | os.PathLike,
    overrides: Sequence[str],
    sweep_args: Sequence[str],
    seeds: int,
    *,
    load: Callable[[Path, list[str]], dict] | None = None,
) -> list[Run]:
    """Every run of the sweep with its validated config, in run order (all grid points with
    the first seed, then with the next, ...: an interrupted sweep has covered the grid first).

    `load` is `sciml._config.load_config`. A config error names the `--sweep` argument whose
    key it is about, or the grid point; one not due to the sweep reads as for a single run.
    """
    from .config import ConfigError, load_config, parse_override

    load = load or load_config
    if seeds < 1:
        raise SweepError(f"--seeds {seeds} is invalid: expected an integer >= 1")
    sweeps = [parse_sweep(a) for a in sweep_args]
    set_keys = []
    for text in overrides:
        try:
            parts, _ = parse_override(text)
        except ConfigError as e:
            raise SweepError(str(e)) from None
        set_keys.append((".".join(parts), text))
    check_sweeps(sweeps, set_keys)

    def load_point(values: dict[str, str], extra: list[str]) -> dict:
        try:
            return load(config_file, [*overrides, *extra])
        except ConfigError as e:
            for sweep in sweeps:
                if e.key and _related(e.key, sweep.key):
                    raise SweepError(f"--sweep {sweep.arg!r}: {e}") from None
            try:
                load(config_file, list(overrides))
            except ConfigError as base:
                if str(base) == str(e):  # not due to the sweep: as for a single run
                    raise SweepError(str(e)) from None
            point = ", ".join(f"{k}={v}" for k, v in values.items())
            raise SweepError(f"--sweep grid point {point}: {e}") from None

    grid = expand_grid(sweeps)
    firsts, seen = [], {}
    for values in grid:
        point_overrides = [f"{k}={v}" for k, v in values.items()]
        config = load_point(values, point_overrides)
        frozen = json.dumps(config, sort_keys=True, default=str)
        if frozen in seen:
            a = ", ".join(f"{k}={v}" for k, v in seen[frozen].items())
            b = ", ".join(f"{k}={v}" for k, v in values.items())
            raise SweepError(f"--sweep grid points {a} and {b} give the same config")
        seen[frozen] = values
        firsts.append((values, point_overrides, config))

    runs = []
    for k in range(seeds):
        for index, (values, point_overrides, first) in enumerate(firsts):
            seed = first["seed"] + k
            extra = [*point_overrides, f"seed={seed}"]
            config = copy.deepcopy(first) if k == 0 else load_point(values, extra)
            runs.append(Run(index, dict(values), seed, extra, config))
    names = run_names(runs[0].config["name"], runs)
    for run, name in zip(runs, names, strict=True):
        run.name = name
    return runs


def describe(
    config_file: str | os.PathLike, overrides: Sequence[str], runs: Sequence[Run]
) -> dict[str, Any]:
    """What a sweep ran, for the head of `summary.json`: the config file, its `--set`
    overrides, each swept key with its (validated) values, and the seeds."""
    sweep: dict[str, list] = {k: [] for k in (runs[0].values if runs else {})}
    for run in runs:
        for k, v in _swept(run).items():
            if v not in sweep[k]:
                sweep[k].append(v)
    return {
        "config": str(config_file),
        "set": list(overrides),
        "sweep": sweep,
        "seeds": list(dict.fromkeys(r.seed for r in runs)),
    }


def run_sweep(
    runs: Sequence[Run],
    sweep_dir: Path,
    run_one: Callable[[dict, Path], dict],
    header: dict[str, Any],
    *,
    debug: bool = False,
) -> str:
    """Runs each `run.config` with `run_one(config, run_dir)` (which returns the final
    metrics), recording failures instead of stopping, and rewrites the summary after every
    run; returns the Markdown table. A `KeyboardInterrupt` marks the current run interrupted,
    writes the summary and propagates."""
    sweep_dir.mkdir(parents=True, exist_ok=True)  # made fresh by the caller
    write_summary(sweep_dir, runs, header)
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.name}", flush=True)
        try:
            run.results = run_one(run.config, sweep_dir / run.name)
            run.status = "ok"
        except KeyboardInterrupt:
            run.status = "interrupted"
            write_summary(sweep_dir, runs, header)
            raise
        except Exception as e:
            run.status, run.error = "failed", one_line(e)
            if debug:
                traceback.print_exc()
            print(f"run {run.name} failed: {run.error}", file=sys.stderr, flush=True)
        table = write_summary(sweep_dir, runs, header)
    return table
