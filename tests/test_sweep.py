"""`sciml run --sweep/--seeds`: value splitting, grid, names, aggregation, tables, usage errors,
failure handling, and one tiny sweep end to end whose summary must equal the mean and sample
standard deviation of its runs' own `results.json`."""

import csv
import io
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from sciml._app import experiment as _experiment
from sciml._app.cli import main
from sciml._app.config import load_config
from sciml._app.sweep import (
    Run,
    Sweep,
    SweepError,
    aggregate,
    expand_grid,
    format_csv,
    format_markdown,
    parse_sweep,
    plan_sweep,
    run_names,
    short_keys,
    slug,
    split_values,
    summarize,
)

REPO = Path(__file__).parent.parent
QUICKSTART = str(REPO / "experiments" / "quickstart.toml")
PINN = str(REPO / "experiments" / "pinn_poisson.toml")


@pytest.mark.parametrize(
    "text, items",
    [
        ("1,2,3", ["1", "2", "3"]),
        (" 8 , 16 ", ["8", "16"]),
        ("[12,12],[16,16]", ["[12,12]", "[16,16]"]),
        ("[12, 12], [16, 16]", ["[12, 12]", "[16, 16]"]),
        ("[[1,2],[3]],{a=1,b=[2,3]}", ["[[1,2],[3]]", "{a=1,b=[2,3]}"]),
        ('"a,b",c', ['"a,b"', "c"]),
        ("'a\\',b", ["'a\\'", "b"]),  # literal strings have no escapes
        ('"a\\",b",c', ['"a\\",b"', "c"]),  # basic strings do
        ("gelu", ["gelu"]),
        ("1e-3,3e-4", ["1e-3", "3e-4"]),
    ],
)
def test_split_values_at_top_level_commas(text, items):
    assert split_values(text) == items


@pytest.mark.parametrize("text", ["[1,2", "1],2", '"abc,d', "{a=1"])
def test_split_values_rejects_unbalanced(text):
    with pytest.raises(ValueError):
        split_values(text)


def test_parse_sweep():
    assert parse_sweep("model.modes=[8,8],[12,12]") == Sweep(
        "model.modes=[8,8],[12,12]", "model.modes", ("[8,8]", "[12,12]")
    )
    assert parse_sweep(" train.lr = 1e-3").key == "train.lr"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("model.width", "expected KEY=V1,V2"),
        ("=1,2", "expected a dotted config key"),
        ("model..width=1,2", "expected a dotted config key"),
        ("model.width=", "give at least one value"),
        ("model.width=  ", "give at least one value"),
        ("model.width=1,,2", "empty value"),
        ("model.width=1,2,", "empty value"),
        ("model.modes=[1,2", "unbalanced brackets"),
    ],
)
def test_parse_sweep_errors(arg, message):
    with pytest.raises(SweepError, match=message) as info:
        parse_sweep(arg)
    assert str(info.value).startswith(f"--sweep {arg!r}")


def test_expand_grid_is_the_cartesian_product_last_key_fastest():
    sweeps = [Sweep("a=1,2", "a", ("1", "2")), Sweep("b=x,y,z", "b", ("x", "y", "z"))]
    grid = expand_grid(sweeps)
    assert grid == [{"a": a, "b": b} for a in ("1", "2") for b in ("x", "y", "z")]
    assert expand_grid([]) == [{}]


def test_slug_and_short_keys():
    assert slug("[4, 4]") == "4_4"
    assert slug("0.003") == "0.003"
    assert slug("1e-05") == "1e-05"
    assert slug("data/my file.h5") == "data_my_file.h5"
    assert slug("") == "_"
    assert len(slug("x" * 100)) == 40
    assert short_keys(["model.width", "train.learning_rate"]) == {
        "model.width": "width",
        "train.learning_rate": "learning_rate",
    }
    assert short_keys(["a.width", "b.width", "c.x"]) == {
        "a.width": "a.width",
        "b.width": "b.width",
        "c.x": "x",
    }


def _run(point, modes, seed, status="ok", results=None, error=None):
    config = {"seed": seed, "model": {"modes": [modes, modes]}}
    run = Run(point, {"model.modes": f"[{modes},{modes}]"}, seed, [], config)
    run.status, run.results, run.error = status, results, error
    return run


def test_run_names_are_readable_and_distinct():
    runs = [Run(0, {"model.modes": "[4,4]"}, s, [], {"model": {"modes": [4, 4]}}) for s in (0, 1)]
    runs.append(Run(1, {"model.modes": "[4,4]"}, 0, [], {"model": {"modes": [4, 4]}}))
    assert run_names("darcy", runs) == [
        "darcy-modes=4_4-seed0",
        "darcy-modes=4_4-seed1",
        "darcy-modes=4_4-seed0-2",
    ]
    assert run_names("pinn", [Run(0, {}, 3, [], {})]) == ["pinn-seed3"]


def test_aggregate_matches_numpy():
    results = [
        {"err": 0.31, "params": 100, "best": 3, "loss": None},
        {"err": 0.27, "params": 100, "best": None, "loss": None},
        {"err": 0.43, "params": 100, "best": 5, "loss": None, "extra": float("nan")},
    ]
    stats = aggregate(results)
    assert list(stats) == ["err", "params", "best", "loss", "extra"]
    err = np.array([0.31, 0.27, 0.43])
    np.testing.assert_allclose(stats["err"]["mean"], err.mean(), rtol=1e-14)
    np.testing.assert_allclose(stats["err"]["std"], err.std(ddof=1), rtol=1e-14)
    assert (stats["err"]["min"], stats["err"]["max"], stats["err"]["n"]) == (0.27, 0.43, 3)
    assert stats["params"] == {"mean": 100, "std": 0, "min": 100, "max": 100, "n": 3}
    np.testing.assert_allclose(stats["best"]["std"], np.std([3, 5], ddof=1), rtol=1e-14)
    assert stats["best"]["n"] == 2
    assert stats["loss"] == {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    assert stats["extra"]["n"] == 0
    assert aggregate([{"err": 0.5}])["err"]["std"] is None


def test_summary_tables():
    runs = [
        _run(0, 4, 0, results={"err": 0.25, "params": 10}),
        _run(1, 8, 0, results={"err": 0.125, "params": 20}),
        _run(0, 4, 1, results={"err": 0.35, "params": 10}),
        _run(1, 8, 1, "failed", error="ValueError: bad | value"),
    ]
    summary = summarize(runs)
    assert summary["keys"] == ["model.modes"] and summary["metrics"] == ["err", "params"]
    assert format_markdown(summary) == (
        "| model.modes | n | err | params | status |\n"
        "|---|---|---|---|---|\n"
        "| [4, 4] | 2/2 | 0.3 ± 0.071 | 10 ± 0 | ok |\n"
        "| [8, 8] | 1/2 | 0.125 | 20 | 1 failed: ValueError: bad \\| value |\n"
    )
    rows = list(csv.DictReader(io.StringIO(format_csv(summary))))
    assert rows[0]["model.modes"] == "[4, 4]" and rows[0]["status"] == "ok"
    assert float(rows[0]["err_mean"]) == pytest.approx(0.3, rel=1e-15)
    assert float(rows[0]["err_std"]) == pytest.approx(np.std([0.25, 0.35], ddof=1), rel=1e-15)
    assert (rows[0]["err_min"], rows[0]["err_max"], rows[0]["err_n"]) == ("0.25", "0.35", "2")
    assert (rows[1]["ok"], rows[1]["failed"], rows[1]["err_std"]) == ("1", "1", "")

    runs[3].status, runs[3].error = "pending", None
    assert summarize(runs)["rows"][1]["status"] == "1 pending"


def test_plan_sweep_loads_each_run_like_set_overrides():
    sets = ["seed=7", "model.width=8"]
    runs = plan_sweep(QUICKSTART, sets, ["model.modes=[4,4], [6, 6]", "model.depth=1,2"], 2)
    assert [(r.point, r.seed) for r in runs] == [(i, s) for s in (7, 8) for i in range(4)]
    assert runs[5].name == "quickstart-modes=4_4-depth=2-seed8"
    assert runs[5].overrides == ["model.modes=[4,4]", "model.depth=2", "seed=8"]
    for run in runs:
        assert run.config == load_config(QUICKSTART, [*sets, *run.overrides])
    assert runs[3].config["model"]["modes"] == [6, 6] and runs[3].config["model"]["depth"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sweep", "model.widht=4,8"], "--sweep 'model.widht=4,8': unknown config key"),
        (["--sweep", "model.width=0,8"], "--sweep 'model.width=0,8': config key 'model.width' = 0"),
        (["--sweep", "model.width=4,x"], "'model.width' = 'x' is invalid: expected an integer"),
        (["--sweep", "model.modes=[4,4],[4]"], "'model.modes' = [4] is invalid: give 2 modes"),
        (["--sweep", "data.resolution=9,29"], "--sweep grid point data.resolution=9: config key"),
        (["--sweep", "model.width=8,8.0"], "grid points model.width=8 and model.width=8.0 give"),
        (["--sweep", "model.width="], "--sweep 'model.width=' is invalid: give at least one"),
        (["--sweep", "model.width"], "--sweep 'model.width' is invalid: expected KEY=V1,V2"),
        (["--sweep", "seed=1,2"], "--sweep 'seed=1,2' is not allowed: use --seeds N"),
        (
            ["--sweep", "model.width=4,8", "--sweep", "model.width=16"],
            "--sweep 'model.width=16' repeats the key of --sweep 'model.width=4,8'",
        ),
        (
            ["--set", "model.width=4", "--sweep", "model.width=4,8"],
            "--sweep 'model.width=4,8' conflicts with --set 'model.width=4'",
        ),
        (["--set", "model.widht=4", "--sweep", "model.width=4,8"], "unknown config key 'model.w"),
        (["--seeds", "0"], "argument --seeds: --seeds '0' is invalid: expected an integer >= 1"),
        (["--seeds", "two"], "argument --seeds: --seeds 'two' is invalid"),
        (["--seeds", "2", "--resume", "runs/x"], "--sweep and --seeds cannot be combined with"),
        (["--sweep", "model.width=4,8", "--resume", "x"], "cannot be combined with --resume"),
        (["--seed", "3"], "--seed is not an option; use --set seed=N"),
    ],
)
def test_sweep_usage_errors(args, message, tmp_path, capsys):
    config = [] if "--resume" in args else [QUICKSTART]
    code = main(["run", *config, *args, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: sciml run: ")
    assert message in err
    assert not (tmp_path / "runs").exists()


def test_sweep_usage_error_pinn(tmp_path, capsys):
    args = ["--sweep", "model.pig.num_gaussians=0,4", "--runs-dir", str(tmp_path)]
    assert main(["run", PINN, *args]) == 2
    err = capsys.readouterr().err
    assert "--sweep 'model.pig.num_gaussians=0,4': config key 'model.pig.num_gaussians' = 0" in err
    assert "allowed: >= 1" in err


def test_failed_grid_point_is_recorded_and_the_others_run(tmp_path, monkeypatch, capsys):
    # No training: `run_experiment` is replaced by a fake whose results are known numbers.
    seen = []

    def fake(config, run_dir, *, resume=False):
        seen.append((config["kind"], config["model"]["pig"]["hidden"], config["seed"]))
        jax.config.update("jax_enable_x64", False)  # as a float32 PINN after a float64 one
        if config["model"]["pig"]["hidden"] == 8 and config["seed"] == 1:
            raise RuntimeError("diverged\nsecond line")
        Path(run_dir).mkdir(parents=True)
        return {"test_relative_l2": config["model"]["pig"]["hidden"] / 100 + config["seed"]}

    monkeypatch.setattr(_experiment, "run_experiment", fake)
    code = main(
        ["run", PINN, "--sweep", "model.pig.hidden=4,8", "--seeds", "2", "--set", "seed=0"]
        + ["--runs-dir", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert jax.config.jax_enable_x64  # restored after each run
    assert seen == [("pinn", 4, 0), ("pinn", 8, 0), ("pinn", 4, 1), ("pinn", 8, 1)]
    assert "RuntimeError: diverged" in err and "1 of 4 runs failed" in err
    (sweep_dir,) = tmp_path.iterdir()
    assert sweep_dir.name.startswith("pinn-poisson-sweep-")
    names = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert names == ["pinn-poisson-hidden=4-seed0", "pinn-poisson-hidden=4-seed1"] + [
        "pinn-poisson-hidden=8-seed0"
    ]
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["sweep"] == {"model.pig.hidden": [4, 8]} and summary["seeds"] == [0, 1]
    ok, bad = summary["rows"]
    assert ok["status"] == "ok" and ok["metrics"]["test_relative_l2"]["n"] == 2
    assert ok["metrics"]["test_relative_l2"]["mean"] == pytest.approx(0.54, rel=1e-14)
    assert bad["status"] == "1 failed: RuntimeError: diverged"
    assert bad["metrics"]["test_relative_l2"]["n"] == 1
    failed = [r for r in summary["runs"] if r["status"] == "failed"]
    assert failed[0]["overrides"] == ["model.pig.hidden=8", "seed=1"]
    markdown = (sweep_dir / "summary.md").read_text()
    assert "| 8 | 1/2 | 0.08 | 1 failed: RuntimeError: diverged |" in markdown
    assert markdown.split("\n\n", 2)[2] in out  # the table is printed at the end


def test_seeds_without_sweep_repeat_the_config(tmp_path, monkeypatch, capsys):
    def fake(config, run_dir, *, resume=False):
        return {"test_relative_l2": [0.5, 0.25, 0.125][config["seed"] - 3], "note": "text"}

    monkeypatch.setattr(_experiment, "run_experiment", fake)
    code = main(["run", QUICKSTART, "--seeds", "3", "--set", "seed=3", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    (sweep_dir,) = tmp_path.iterdir()
    assert sweep_dir.name.startswith("quickstart-sweep-")
    ((row,),) = [json.loads((sweep_dir / "summary.json").read_text())["rows"]]
    assert row["point"] == {} and row["ok"] == 3
    errors = np.array([0.5, 0.25, 0.125])
    stats = row["metrics"]["test_relative_l2"]
    np.testing.assert_allclose(stats["mean"], errors.mean(), rtol=1e-15)
    np.testing.assert_allclose(stats["std"], errors.std(ddof=1), rtol=1e-15)
    assert row["metrics"]["note"]["n"] == 0
    assert "| n | test_relative_l2 | note | status |\n" in out
    assert "| 3/3 | 0.2917 ± 0.19 | – | ok |\n" in out
    for seed in (3, 4, 5):
        assert f"[{seed - 2}/3] quickstart-seed{seed}\n" in out


ANTIDERIVATIVE = str(REPO / "experiments" / "antiderivative_deeponet.toml")
TINY = [
    "data.resolution=8",
    "data.n_train=4",
    "data.n_test=2",
    "model.branch_widths=[4]",
    "model.trunk_widths=[4]",
    "model.basis=4",
    "train.batch_size=4",
    "train.epochs=1",
    "train.progress=false",
    "eval.plot_samples=0",
]


def test_sweep_end_to_end(tmp_path, capsys):
    # 2 learning rates x 2 seeds of a tiny DeepONet: the cheapest data and model to compile
    # (each run compiles its own train step; the same shapes everywhere share the rest).
    sets = [a for s in [*TINY, f"data.cache_dir={tmp_path / 'data'}"] for a in ("--set", s)]
    args = ["--sweep", "train.learning_rate=1e-2,3e-3", "--seeds", "2", "--set", "seed=5"]
    code = main(["run", ANTIDERIVATIVE, *sets, *args, "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0, err
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["sweep"] == {"train.learning_rate": [1e-2, 3e-3]}
    assert summary["seeds"] == [5, 6]
    csv_rows = list(csv.DictReader(io.StringIO((sweep_dir / "summary.csv").read_text())))
    for row, csv_row, lr in zip(summary["rows"], csv_rows, ("0.01", "0.003"), strict=True):
        assert row["status"] == "ok" and row["runs"] == row["ok"] == 2
        runs = [sweep_dir / f"antiderivative_deeponet-learning_rate={lr}-seed{s}" for s in (5, 6)]
        results = [json.loads((r / "results.json").read_text()) for r in runs]
        for run, seed in zip(runs, (5, 6), strict=True):
            config = (run / "config.toml").read_text()
            assert f"seed = {seed}\n" in config and f"learning_rate = {lr}\n" in config
        assert results[0]["test_relative_l2"] != results[1]["test_relative_l2"]
        assert list(row["metrics"]) == list(results[0])
        for metric, stats in row["metrics"].items():
            values = np.array([r[metric] for r in results], dtype=float)
            assert stats["n"] == 2 and (stats["min"], stats["max"]) == (values.min(), values.max())
            np.testing.assert_allclose(stats["mean"], values.mean(), rtol=1e-12)
            np.testing.assert_allclose(stats["std"], values.std(ddof=1), rtol=1e-12, atol=1e-15)
            assert float(csv_row[f"{metric}_mean"]) == stats["mean"]
    table = (sweep_dir / "summary.md").read_text().split("\n\n", 2)[2]
    assert table.startswith("| train.learning_rate | n | test_relative_l2 |")
    assert table in out and str(sweep_dir) in out
