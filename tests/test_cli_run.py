"""End to end through the console script: generate data, train, evaluate, plot, resume."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cli import run_sciml

from sciml.data import load_dataset

REPO = Path(__file__).parent.parent
TINY = [
    "--set",
    "data.resolution=17",
    "--set",
    "data.solve_resolution=65",
    "--set",
    "data.n_train=12",
    "--set",
    "data.n_test=4",
    "--set",
    "model.modes=[4, 4]",
    "--set",
    "model.width=8",
    "--set",
    "model.padding=2",
    "--set",
    "model.projection_channels=16",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.progress=false",
    "--set",
    "eval.plot_samples=2",
]


def test_data_command_is_deterministic_and_documented(tmp_path):
    for name in ("a.h5", "b.h5"):
        out = run_sciml(
            "data",
            "darcy",
            "--n",
            "3",
            "--resolution",
            "9",
            "--solve-resolution",
            "33",
            "--seed",
            "5",
            "--out",
            name,
            "--no-progress",
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
    digests = {hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.h5", "b.h5")}
    assert len(digests) == 1
    ds = load_dataset(tmp_path / "a.h5")
    assert ds.inputs.shape == ds.outputs.shape == (3, 1, 9, 9)
    assert set(np.unique(ds.inputs)) <= {3.0, 12.0}
    assert np.all(ds.outputs[:, :, 0, :] == 0) and np.all(ds.outputs[:, :, :, -1] == 0)
    assert ds.attrs["seed"] == 5 and ds.attrs["recipe"]
    np.testing.assert_allclose(ds.grid[0], np.linspace(0, 1, 9))


@pytest.mark.slow
def test_run_then_resume(tmp_path):
    (tmp_path / "c.toml").write_text((REPO / "experiments" / "quickstart.toml").read_text())
    out = run_sciml("run", "c.toml", *TINY, "--set", "train.epochs=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("quickstart-")
    for name in (
        "config.toml",
        "metrics.jsonl",
        "results.json",
        "best_model.eqx",
        "plots/loss.png",
        "plots/predictions.png",
    ):
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 < results["test_relative_l2"] < 1.5
    assert "test_relative_l2" in out.stdout and str(run_dir.name) in out.stdout
    # The dataset was generated once and cached.
    (cached,) = (tmp_path / "data").glob("*.h5")
    assert load_dataset(cached).inputs.shape == (16, 1, 17, 17)

    # Resume the finished run and extend it by one epoch: history continues, no duplicates.
    out = run_sciml("run", "--resume", str(run_dir), "--set", "train.epochs=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]

    # Zero-shot evaluation of the trained model on fresh data at twice the resolution.
    out = run_sciml("eval", str(run_dir), "--resolution", "33", "--n", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    fine = json.loads((run_dir / "eval_s33_seed1000.json").read_text())
    assert fine["trained_resolution"] == 17 and fine["resolution"] == 33
    assert 0 < fine["test_relative_l2"] < 1.5


def test_eval_needs_no_training_file(tmp_path, monkeypatch, capsys):
    """`sciml eval` generates its own data: a run trained on a `data.path` file that has
    since been deleted still evaluates."""
    import jax
    import tomli_w

    from sciml._app.cli import main
    from sciml._app.config import load_config
    from sciml._app.operator_run import build_normalized_model
    from sciml.train import save_model_file

    monkeypatch.chdir(tmp_path)
    train_file = tmp_path / "train.h5"
    train_file.write_bytes(b"placeholder")  # only has to exist while the config is checked
    overrides = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    config = load_config(
        REPO / "experiments" / "quickstart.toml", [*overrides, f'data.path="{train_file}"']
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(tomli_w.dumps(config))
    res = config["data"]["resolution"]
    x = np.zeros((2, 1, res, res), np.float32)
    model = build_normalized_model(config, x, x, key=jax.random.key(0))
    save_model_file(run_dir / "best_model.eqx", model)  # as fit writes it, with its checksum
    train_file.unlink()

    assert main(["eval", str(run_dir), "--n", "2"]) == 0, capsys.readouterr()
    results = json.loads((run_dir / f"eval_s{res}_seed1000.json").read_text())
    assert results["n"] == 2 and np.isfinite(results["test_relative_l2"])
