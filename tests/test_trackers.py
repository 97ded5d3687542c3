"""Experiment trackers: TensorBoard event files read back value by value; Weights & Biases and
MLflow through stand-in modules that record the calls (neither service is reachable here);
one-line errors when a tracker's package is missing."""

import struct
import sys
import types

import numpy as np
import pytest

from sciml import train
from sciml.train import flatten_config
from sciml.train._trackers import scalars

RECORDS = [
    {"step": 10, "train_loss": 0.5, "eval_relative_l2": 0.25, "phase": "adam", "ok": True},
    {"step": 20, "train_loss": 0.125, "eval_relative_l2": float("nan"), "lr": 1e-3},
]


def _events(folder):
    """Every (tag, step, value) scalar of the event files in `folder` (TFRecord frames:
    length, its CRC, the serialised `Event`, its CRC)."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.append((value.tag, event.step, value.simple_value))
    return found


def test_scalars_keep_finite_numbers_only():
    assert scalars(RECORDS[0]) == {"train_loss": 0.5, "eval_relative_l2": 0.25}
    assert scalars(RECORDS[1]) == {"train_loss": 0.125, "lr": 1e-3}
    assert flatten_config({"train": {"steps": 3, "modes": [4, 4]}, "seed": 0}) == {
        "train.steps": 3,
        "train.modes": [4, 4],
        "seed": 0,
    }


def test_tensorboard_tracker_writes_the_records(tmp_path):
    pytest.importorskip("tensorboardX")
    with train.TensorBoardTracker(tmp_path / "tb", config={"train.steps": 20}) as tracker:
        for record in RECORDS:
            assert tracker(None, record) is None  # a callback that never stops training
    assert sorted(_events(tmp_path / "tb")) == [
        ("eval_relative_l2", 10, 0.25),
        ("lr", 20, pytest.approx(1e-3)),
        ("train_loss", 10, 0.5),
        ("train_loss", 20, 0.125),
    ]


def _fake(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_wandb_and_mlflow_trackers_make_the_calls(monkeypatch):
    calls = []

    class Run:
        def log(self, values, step):
            calls.append(("wandb.log", values, step))

        def finish(self):
            calls.append(("wandb.finish",))

    _fake(monkeypatch, "wandb", init=lambda **kw: calls.append(("wandb.init", kw)) or Run())
    with train.WandbTracker("proj", name="run-1", config={"a": 1}, mode="offline") as tracker:
        tracker(None, RECORDS[0])
    assert calls == [
        ("wandb.init", {"project": "proj", "name": "run-1", "config": {"a": 1}, "mode": "offline"}),
        ("wandb.log", {"train_loss": 0.5, "eval_relative_l2": 0.25}, 10),
        ("wandb.finish",),
    ]

    calls.clear()
    record = lambda name: lambda *a, **kw: calls.append((name, a, kw))
    _fake(
        monkeypatch,
        "mlflow",
        set_tracking_uri=record("uri"),
        set_experiment=record("experiment"),
        start_run=record("start"),
        log_params=record("params"),
        log_metrics=record("metrics"),
        end_run=record("end"),
    )
    with train.MlflowTracker("exp", tracking_uri="file:./m", run_name="r", config={"b": 2}) as t:
        t(None, RECORDS[1])
    assert calls == [
        ("uri", ("file:./m",), {}),
        ("experiment", ("exp",), {}),
        ("start", (), {"run_name": "r"}),
        ("params", ({"b": "2"},), {}),
        ("metrics", ({"train_loss": 0.125, "lr": 1e-3},), {"step": 20}),
        ("end", (), {}),
    ]


def test_a_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(train.MissingTrackerError, match=r"pip install 'sciml\[wandb\]'"):
        train.WandbTracker("proj")


def test_chained_callbacks_all_see_each_record_and_any_stops():
    seen = []
    first = lambda model, record: seen.append(("first", record["step"]))
    stop = lambda model, record: seen.append(("stop", record["step"])) or record["step"] >= 20
    chained = train.chain_callbacks(None, first, stop)
    assert [chained(None, r) for r in RECORDS] == [False, True]
    assert seen == [("first", 10), ("stop", 10), ("first", 20), ("stop", 20)]
    assert train.chain_callbacks(None, first) is first and train.chain_callbacks() is None


def test_config_sends_the_records_to_tensorboard_and_checks_packages(tmp_path, monkeypatch):
    """`log.trackers = ["tensorboard"]` in a (tiny) PINN config: RUN/tensorboard holds every
    record's loss at its step; a tracker whose package is missing is refused before the run,
    in one line naming the key."""
    pytest.importorskip("tensorboardX")
    import importlib.util
    import json

    from test_pinn_config import REPO, TINY

    from sciml._app.config import ConfigError, load_config
    from sciml._app.experiment import run_experiment

    config = load_config(
        REPO / "experiments" / "pinn_poisson.toml",
        [*TINY, "model.name=mlp", "log.trackers=['tensorboard']"],
    )
    run_experiment(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = sorted(
        (step, value)
        for tag, step, value in _events(tmp_path / "run" / "tensorboard")
        if tag == "train_loss"
    )
    assert [step for step, _ in logged] == [r["step"] for r in records]
    # Event files hold float32.
    np.testing.assert_allclose([v for _, v in logged], [r["train_loss"] for r in records], 1e-6)

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name)
    )
    with pytest.raises(ConfigError, match=r"'log.trackers' = \['wandb'\].*sciml\[wandb\]"):
        load_config(REPO / "experiments" / "pinn_poisson.toml", ["log.trackers=['wandb']"])
    with pytest.raises(ConfigError, match="log.trackers"):
        load_config(REPO / "experiments" / "pinn_poisson.toml", ["log.trackers=['comet']"])
