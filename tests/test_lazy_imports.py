"""`import sciml` and the command line's start-up load only what they use.

Checked in fresh interpreters, since the suite's own process has imported everything.
"""

import subprocess
import sys

_CHECK = """
import sys
import sciml
assert not {"jax", "flax", "diffrax", "matplotlib"} & set(sys.modules), sorted(sys.modules)
import sciml.train
assert not {"flax", "matplotlib"} & set(sys.modules)
sciml.operators.FNO, sciml.pinn.solve  # subpackages load on first use
assert "flax" not in sys.modules
from sciml.interop import from_nnx
assert sciml.interop.from_nnx is from_nnx and "flax" in sys.modules
assert {"data", "interop", "train"} <= set(dir(sciml))
try:
    sciml.nonexistent
except AttributeError as e:
    assert "nonexistent" in str(e)
else:
    raise AssertionError("sciml.nonexistent did not raise AttributeError")
"""


def test_subpackages_and_heavy_dependencies_load_on_first_use():
    done = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


_HELP = """
import runpy
import sys
sys.argv = ["sciml", "--help"]
try:
    runpy.run_module("sciml", run_name="__main__")
except SystemExit:
    pass
assert "jax" not in sys.modules, "jax imported"
"""


def test_cli_help_does_not_import_jax():
    done = subprocess.run([sys.executable, "-c", _HELP], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: sciml" in done.stdout
