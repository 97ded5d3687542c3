"""The malformed files of tests/test_fuzz_external.py, now through `sciml run`: each stops with
exit status 2 and one line on stderr that names the file or the config key at fault, and leaves
no run directory, whether the file's headers already tell (the config check) or only its values
do (the first read, after the run directory was made)."""

import os

import pytest
import tomli_w
from test_fuzz_external import CASES

from sciml._app.cli import main


def _config_value(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", sorted(CASES))
def test_sciml_run_refuses_a_malformed_file_in_one_line(tmp_path, capsys, name):
    path, kwargs, _ = CASES[name](tmp_path)
    data = {"path": str(path)}
    data.update({k: _config_value(v) for k, v in kwargs.items()})
    config = {
        "name": "fuzz",
        "data": data,
        "model": {"modes": [2, 2], "width": 4, "depth": 1, "padding": 0, "projection_channels": 4},
        "train": {"epochs": 1, "batch_size": 1, "progress": False},
        "eval": {"plot_samples": 0},
    }
    try:
        text = tomli_w.dumps(config)
    except (TypeError, ValueError):  # a value TOML cannot hold (e.g. None): not a config
        pytest.skip("not expressible in a config file")
    (tmp_path / "c.toml").write_text(text)
    runs = tmp_path / "runs"
    status = main(["run", str(tmp_path / "c.toml"), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: sciml run: ") and err.count("\n") == 1, err
    assert path.name in err or "config key 'data." in err or "config key 'model." in err, err
    assert "Traceback" not in err
    assert not runs.exists() or not os.listdir(runs), os.listdir(runs)
