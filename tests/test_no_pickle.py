"""Nothing that reads files or configs can run code: no pickle, no eval/exec.

A static check over the package's source, plus a checkpoint whose array is a pickle that
would create a file when unpickled: restoring it fails with a clear error, and runs nothing.
"""

import ast
import hashlib
import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.train import restore_checkpoint, save_checkpoint

PACKAGE = Path(__file__).parent.parent / "sciml"
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_ATTRIBUTES = {"unsafe_load", "full_load"}  # PyYAML's loaders that build objects


def _violations(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        found += [f"{where}: imports {n}" for n in names if n in UNSAFE_MODULES]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
                found.append(f"{where}: calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in UNSAFE_ATTRIBUTES:
                found.append(f"{where}: calls .{func.attr}()")
            if isinstance(func, ast.Attribute) and func.attr == "load":
                owner = ast.unparse(func.value)
                if owner in ("yaml", "torch"):
                    found.append(f"{where}: calls {owner}.load()")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{where}: allow_pickle={ast.unparse(kw.value)}")
    return found


def test_the_package_never_unpickles_or_evaluates():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40  # the whole package is scanned
    violations = [v for path in files for v in _violations(path)]
    assert not violations, violations


def test_the_scanner_finds_what_it_looks_for(tmp_path, monkeypatch):
    bad = PACKAGE / "_scanner_probe.py"  # never written: the scanner reads the text we give
    source = (
        "import pickle\nfrom marshal import loads\nimport yaml\n"
        "x = eval('1')\nnp.load(f, allow_pickle=True)\nyaml.unsafe_load(s)\ntorch.load(p)\n"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    found = _violations(bad)
    assert len(found) == 6, found


class _Payload:
    """Unpickling this creates a file: the proof that unpickling happened."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_checkpoint_holding_a_pickle_is_refused_without_running_it(tmp_path):
    state = {"w": jnp.arange(3.0), "b": jnp.zeros(2)}
    path = save_checkpoint(tmp_path / "ckpt", 1, state)
    marker = tmp_path / "pwned"
    # Replace the file by one whose first leaf is a pickled object array, and give it a valid
    # checksum, as an attacker who can write both files would.
    buffer = io.BytesIO()
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(str(marker))
    np.save(buffer, evil, allow_pickle=True)
    buffer.write(path.read_bytes())
    path.write_bytes(buffer.getvalue())
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match the structure"):
        restore_checkpoint(path, state)
    assert not marker.exists()
    # The untouched state still round-trips (the check is not simply "reject everything").
    good = save_checkpoint(tmp_path / "ok", 2, state)
    restored, _ = restore_checkpoint(good, state)
    assert eqx.tree_equal(restored, state)
