"""Export: a model as serialised StableHLO with a symbolic batch size, run in a fresh process
that imports JAX and NumPy only, agrees with the live model; `sciml export` of a run."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli import run_sciml
from test_cli_run import TINY

import sciml
from sciml import export_model, fields, operators

REPO = Path(__file__).parent.parent
# The fresh process: loads each exported file, calls it on the saved inputs, and reports
# whether anything but JAX and NumPy was imported.
_FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from jax import export
    cases = json.loads(sys.argv[1])
    for name, n_args in cases.items():
        f = export.deserialize(bytearray(open(name + ".jax", "rb").read()))
        saved = np.load(name + "_in.npz")
        for b in (1, 5):
            args = [saved[f"b{b}_{i}"] for i in range(n_args)]
            np.save(f"{name}_out_b{b}.npy", np.asarray(f.call(*args)))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("sciml", "equinox"))))
    """
)


def _fresh_process(cwd: Path, cases: dict[str, int]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, json.dumps(cases)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_exported_fno_and_deeponet_agree_in_a_process_without_sciml(tmp_path, getkey):
    """FNO (2-D, one argument) and DeepONet (two arguments, `(u, y)`) exported for a symbolic
    batch agree with the live models at batch sizes 1 and 5 to 1e-6 (float32: both run the
    same XLA computation; the difference is reassociation at most)."""
    fno = operators.FNO(2, 1, modes=(4, 4), width=8, key=getkey())
    deeponet = operators.DeepONet(
        16, 2, 1, branch_widths=(16, 16), trunk_widths=(16, 16), basis=8, key=getkey()
    )
    models = {"fno": (fno, [(2, 12, 12)]), "deeponet": (deeponet, [(16,), (2,)])}
    expected = {}
    for name, (model, shapes) in models.items():
        exported = export_model(model, shapes if len(shapes) > 1 else shapes[0])
        assert str(exported.in_avals[0].shape[0]) == "b"
        (tmp_path / f"{name}.jax").write_bytes(bytes(exported.serialize()))
        inputs = {}
        for b in (1, 5):
            args = [np.asarray(jax.random.normal(getkey(), (b, *s))) for s in shapes]
            inputs.update({f"b{b}_{i}": a for i, a in enumerate(args)})
            expected[name, b] = np.asarray(jax.vmap(model)(*args))
        np.savez(tmp_path / f"{name}_in.npz", **inputs)
    imported = _fresh_process(tmp_path, {name: len(s) for name, (_, s) in models.items()})
    assert imported == []
    for (name, b), want in expected.items():
        got = np.load(tmp_path / f"{name}_out_b{b}.npy")
        assert got.shape == want.shape == ((b, 1, 12, 12) if name == "fno" else (b, 1))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_export_of_a_field_in_double_precision_and_bad_arguments():
    model = fields.MLP(3, 2, width=8, depth=2, key=jax.random.key(0), dtype=jnp.float64)
    exported = export_model(model, (3,), dtype=np.float64, platforms=("cpu", "cuda"))
    assert exported.platforms == ("cpu", "cuda")
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(exported.call(x), jax.vmap(model)(jnp.asarray(x)), rtol=1e-14)
    single = export_model(model, (3,), dtype=np.float64, batch=False)
    np.testing.assert_allclose(single.call(x[0]), model(jnp.asarray(x[0])), rtol=1e-14)
    with pytest.raises(ValueError, match="`sample_shape` must be"):
        export_model(model, (0,))
    with pytest.raises(ValueError, match="`platforms` must be"):
        export_model(model, (3,), platforms=("gpu",))


@pytest.mark.slow
def test_sciml_export_of_a_run(tmp_path):
    (tmp_path / "c.toml").write_text((REPO / "experiments" / "quickstart.toml").read_text())
    out = run_sciml("run", "c.toml", *TINY, "--set", "train.epochs=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    out = run_sciml("export", str(run_dir), "--out", "model.jax", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "model.jax.json").read_text())
    assert info["inputs"] == [{"shape": ["b", "1", "17", "17"], "dtype": "float32"}]
    assert "export.deserialize" in out.stdout
    # Against the live model (normalisers included), in a fresh process without sciml.
    model = sciml.load_model(run_dir)
    rng = np.random.default_rng(0)
    inputs, expected = {}, {}
    for b in (1, 5):
        x = rng.uniform(3, 12, size=(b, 1, 17, 17)).astype(np.float32)
        inputs[f"b{b}_0"], expected[b] = x, np.asarray(jax.vmap(model)(x))
    np.savez(tmp_path / "model_in.npz", **inputs)
    assert _fresh_process(tmp_path, {"model": 1}) == []
    for b, want in expected.items():
        got = np.load(tmp_path / f"model_out_b{b}.npy")
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # Another resolution (FNO), and the one-line errors.
    out = run_sciml(
        "export", str(run_dir), "--out", "m33.jax", "--sample-shape", "1,33,33", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    errors = {
        ("--out", "model.jax"): "already exists; pass --force",
        ("--out", "x.jax", "--sample-shape", "1,x"): "--sample-shape '1,x' is invalid",
        ("--out", "x.jax", "--platforms", "gpu"): "--platforms 'gpu' is invalid",
    }
    for args, message in errors.items():
        out = run_sciml("export", str(run_dir), *args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    out = run_sciml("export", str(tmp_path), "--out", "y.jax", cwd=tmp_path)
    assert out.returncode == 2 and "not a run directory" in out.stderr
    assert not (tmp_path / "x.jax").exists() and not (tmp_path / "y.jax").exists()
