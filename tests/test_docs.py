"""The documentation builds offline, without a single warning, and holds what it promises.

`mkdocs build --strict` turns every warning (a broken link, an unresolved cross-reference in a
docstring, a page missing from the nav) into an error. The build runs with the proxy pointed
at a closed local port, so anything that tried to reach the network would fail here too.
"""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("mkdocs", reason="the documentation tools come with the `dev` extra")

ROOT = pathlib.Path(__file__).resolve().parents[1]


# The site is built once for all tests here, also when pytest-xdist spreads them over workers
# (`once_per_run`; the group keeps them on one worker where xdist honours it).
pytestmark = pytest.mark.xdist_group("docs_site")


def _build(out: pathlib.Path) -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",  # mkdocs-material's end-of-life banner
        "http_proxy": closed,
        "https_proxy": closed,
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "no_proxy": "",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean"]
        + ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)


@pytest.fixture(scope="session")
def site(once_per_run):
    return once_per_run("docs_site", _build)


def _page(site: pathlib.Path, name: str) -> str:
    return (site / name / "index.html").read_text()


@pytest.mark.parametrize(
    "page, names",
    [
        ("api/operators", ["FNO", "MgNO", "DeepONet", "SpectralConv"]),
        ("api/fields", ["MLP", "PIG"]),
        ("api/derivatives", ["laplacian", "stde_laplacian", "differential_operator"]),
        ("api/data", ["grf", "darcy_solve", "burgers_solve", "load_dataset", "open_dataset"]),
        ("api/data", ["OnDiskArray", "OnDiskArray.subset", "Dataset.close"]),
        ("api/train", ["fit", "train_step", "init_optimizer", "batches", "save_checkpoint"]),
        ("api/pinn", ["solve", "Problem", "Dirichlet", "benchmarks.helmholtz_2d"]),
        ("api/uq", ["Ensemble", "calibrate", "conserve", "integral_constraint"]),
        ("api/operators", ["pino_loss", "darcy_residual", "fine_tune"]),
    ],
)
def test_api_pages_document_the_public_names(site, page, names):
    html = _page(site, page)
    module = "sciml." + page.removeprefix("api/")
    for name in names:
        assert f'id="{module}.{name}"' in html, f"{module}.{name} is not documented"
    # Private modules stay hidden; docstrings render as Markdown, not as raw text.
    assert f'id="{module}._' not in html
    assert "<strong>Arguments:</strong>" in html
    assert "**Arguments:**" not in html


def test_config_keys_come_from_the_schema(site):
    from sciml._app.config import PINN_SCHEMA, SCHEMA

    html = _page(site, "guide/configs")
    assert "sciml:config-keys" not in html and "sciml:cli-help" not in html
    assert "<code>train.batch_size</code>" in html
    assert "<code>model.mlp.width</code>" in html  # nested tables of PINN_SCHEMA
    assert "<td>0 &lt; lr &lt; 1</td>" in html  # `allowed` text, escaped for HTML only once
    for schema in (SCHEMA, PINN_SCHEMA):
        for table, options in schema.items():
            if isinstance(options, dict):
                key = next(k for k, v in options.items() if not isinstance(v, dict))
                assert f"<code>{table}.{key}</code>" in html
    # The help of every subcommand, generated from the argument parser.
    for text in ("usage: sciml run", "--resume", "usage: sciml data", "usage: sciml eval"):
        assert text in html


def test_guides_are_built(site):
    for page in ("guide/install", "guide/own_loop", "guide/pinn", "guide/multi_device"):
        assert (site / page / "index.html").is_file()
    assert "jax.devices()" in _page(site, "guide/install")
    assert "make_mesh" in _page(site, "guide/multi_device")
