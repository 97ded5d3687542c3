"""Config validation and the CLI's handling of bad input: one line, exit status 2, no work done."""

import tomllib
from pathlib import Path

import pytest
import tomli_w

from sciml._app.cli import main
from sciml._app.config import SCHEMA, ConfigError, apply_overrides, load_config, validate_config


def test_defaults_fill_in():
    config = validate_config({})
    assert config["model"]["modes"] == [12, 12]
    assert config["train"]["epochs"] == 500
    assert set(config) == set(SCHEMA)


def test_overrides_are_parsed_as_toml_values():
    raw = apply_overrides(
        {}, ["train.epochs=7", "model.modes=[4, 4]", "name=my-run", "train.normalize=false"]
    )
    config = validate_config(raw)
    assert config["train"]["epochs"] == 7
    assert config["model"]["modes"] == [4, 4]
    assert config["name"] == "my-run"
    assert config["train"]["normalize"] is False
    assert validate_config({"train": {"weight_decay": 0}})["train"]["weight_decay"] == 0.0


@pytest.mark.parametrize(
    "raw, fragments",
    [
        ({"trian": {}}, ["'trian'", "allowed here", "train"]),
        ({"train": {"epoch": 3}}, ["'train.epoch'", "epochs"]),
        ({"train": {"epochs": "ten"}}, ["'train.epochs'", "'ten'", "an integer"]),
        ({"train": {"epochs": 0}}, ["'train.epochs'", "0", ">= 1"]),
        ({"train": {"epochs": True}}, ["'train.epochs'", "an integer"]),
        ({"train": {"learning_rate": -1.0}}, ["'train.learning_rate'", "-1.0", "0 < lr < 1"]),
        ({"train": {"learning_rate": float("nan")}}, ["'train.learning_rate'", "finite"]),
        ({"train": {"loss": "l1"}}, ["'train.loss'", "'l1'", "'relative_l2', 'h1'"]),
        ({"model": {"modes": [12, "a"]}}, ["'model.modes'", "a list of int"]),
        ({"model": {"modes": [12]}}, ["'model.modes'", "2 modes"]),
        ({"model": {"modes": [50, 50]}}, ["'model.modes'", "at most"]),
        ({"model": "fno"}, ["'model'", "a table"]),
        ({"model": {"padding": 100}}, ["'model.padding'", "100", "at most"]),
        ({"data": {"resolution": 85, "solve_resolution": 400}}, ["'data.solve_resolution'", "400"]),
        ({"train": {"batch_size": 2000}}, ["'train.batch_size'", "2000", "n_train"]),
        ({"name": "a b"}, ["'name'", "'a b'", "letters"]),
        ({"data": {"nu": 0.1}}, ["'data.nu'", "does not apply", "'darcy'"]),
        ({"model": {"name": "mgno", "modes": [8, 8]}}, ["'model.modes'", "'mgno'"]),
        ({"task": {"t_in": 5}}, ["'task.t_in'", "navier_stokes"]),
        ({"task": {"kind": "rollout"}}, ["'task.kind'", "'rollout'", "'direct'"]),
        (
            {"data": {"resolution": 60}, "model": {"name": "mgno", "levels": 4}},
            ["'data.resolution'", "60", "divisible by 8"],
        ),
        (
            {"model": {"name": "mgno", "levels": 3, "channels": [8, 8]}},
            ["'model.channels'", "one per level"],
        ),
        (
            {"data": {"resolution": 64}, "model": {"name": "deeponet", "sensors": 11}},
            ["'model.sensors'", "11", "grid points"],
        ),
        (
            {"data": {"resolution": 65}, "model": {"name": "deeponet", "sensors": 1}},
            ["'model.sensors'", "1", "grid points"],
        ),
        (
            {
                "data": {"recipe": "navier_stokes", "resolution": 64},
                "task": {"kind": "rollout"},
                "model": {"modes": [8, 8]},
            },
            ["'train.normalize'", "rollout"],
        ),
        (
            {
                "data": {"recipe": "navier_stokes", "resolution": 64},
                "task": {"kind": "space_time"},
                "model": {"modes": [8, 8]},
            },
            ["'model.modes'", "give 3 modes"],
        ),
        (
            {"data": {"recipe": "navier_stokes", "resolution": 64}, "task": {"t_out": 45}},
            ["'task.t_out'", "45", "50 recorded frames"],
        ),
        (
            {"data": {"recipe": "burgers", "resolution": 1000}, "model": {"modes": [16]}},
            ["'data.resolution'", "1000", "'burgers'"],
        ),
    ],
)
def test_bad_configs_name_key_value_and_allowed(raw, fragments):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def _run_cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "CONFIG", "--set", "train.epochs=0"], "'train.epochs'"),
        (["run", "CONFIG", "--set", "train.oops=1"], "'train.oops'"),
        (["run", "CONFIG", "--set", "noequals"], "KEY=VALUE"),
        (["run", "missing.toml"], "does not exist"),
        (["run"], "CONFIG"),
        (["run", "--resume", "RUNS/none"], "not a run directory"),
        (["frobnicate"], "invalid choice"),
        (["eval", "RUNS/none"], "not a finished run directory"),
        (["eval", "RUNS/none", "--n", "-3"], "--n '-3'"),
        (["data", "darcy", "--n", "0", "--resolution", "16", "--out", "OUT"], "--n '0'"),
        (["data", "darcy", "--n", "3", "--resolution", "x", "--out", "OUT"], "--resolution 'x'"),
        (["data", "darcy", "--n", "3", "--resolution", "16", "--out", "EXISTING"], "--force"),
        (
            [
                "data",
                "darcy",
                "--n",
                "3",
                "--resolution",
                "16",
                "--solve-resolution",
                "20",
                "--out",
                "OUT",
            ],
            "--solve-resolution 20",
        ),
        (["data", "heat", "--n", "3", "--resolution", "16", "--out", "OUT"], "'heat'"),
        (
            ["data", "burgers", "--n", "3", "--resolution", "16", "--zero-mean", "--out", "OUT"],
            "--zero-mean does not apply to the burgers recipe",
        ),
        (
            ["data", "darcy", "--n", "3", "--resolution", "16", "--nu", "-1", "--out", "OUT"],
            "--nu '-1'",
        ),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(argv, fragment, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('name = "t"\n')
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"precious")
    subs = {
        "CONFIG": str(config),
        "OUT": str(tmp_path / "out.h5"),
        "EXISTING": str(existing),
        "RUNS/none": str(tmp_path / "none"),
        "missing.toml": str(tmp_path / "missing.toml"),
    }
    argv = [subs.get(a, a) for a in argv]
    if argv[0] == "run":
        argv += ["--runs-dir", str(tmp_path / "runs")]
    code, err = _run_cli(argv, capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert fragment in err
    # Nothing was written and nothing already there was touched.
    assert existing.read_bytes() == b"precious"
    assert not (tmp_path / "out.h5").exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parent.parent / "experiments").glob("*.toml")), ids=str
)
def test_shipped_configs_validate_and_their_resolved_form_round_trips(path):
    # A run directory stores the resolved config (every key, defaults included); it must load
    # again for `sciml eval` and `--resume`.
    config = load_config(path)
    assert validate_config(tomllib.loads(tomli_w.dumps(config))) == config


# --- tables nested thousands of levels deep (issue 16, defect 8) ---------------------------

DEEP = ".".join(["a"] * 2000)


def test_deeply_nested_tables_are_config_errors_not_recursion_errors(tmp_path):
    def message(path, overrides=()):
        with pytest.raises(ConfigError) as info:
            load_config(path, list(overrides))
        assert len(str(info.value).splitlines()) == 1, info.value
        return str(info.value)

    path = tmp_path / "deep.toml"
    path.write_text(f"[{DEEP}]\nx = 1\n")  # a RecursionError copying the tables before
    assert message(path).startswith("unknown config key 'a'; allowed here: data, eval, ")
    path.write_text(f'kind = "pinn"\n[model.mlp.width.{DEEP}]\nx = 1\n')  # ... showing them
    assert message(path) == (
        "config key 'model.mlp.width' = {'a': {'a': {'a': {...}}}} is invalid: expected an integer"
    )
    config = tmp_path / "c.toml"
    config.write_text('name = "t"\n')
    assert message(config, [f"{DEEP}=1"]).startswith("unknown config key 'a'; allowed here: ")
    assert message(config, [f"model.depth.{DEEP}=1"]).startswith(
        "config key 'model.depth' = {'a': {'a': {'a': {...}}}} is invalid: expected an integer"
    )


def test_deeply_nested_tables_exit_2_through_the_cli(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text(f"[{DEEP}]\nx = 1\n")
    code, err = _run_cli(["run", str(path), "--runs-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: sciml run: unknown config key 'a'; allowed here: ")
    assert not (tmp_path / "runs").exists()


def test_overrides_copy_the_config():
    raw = {"model": {"modes": [8, 8]}, "data": {"resolution": 64}}
    out = apply_overrides(raw, ["data.n_train=10"])
    out["model"]["modes"].append(8)
    assert raw == {"model": {"modes": [8, 8]}, "data": {"resolution": 64}}
    assert out["data"] == {"resolution": 64, "n_train": 10}
