import itertools

import jax
import pytest

# Numerical comparisons against dense references need float64; tests that exercise the float32
# path build float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """Returns a function that hands out a fresh PRNG key on every call (deterministic per test)."""
    counter = itertools.count()
    base = jax.random.key(0)
    return lambda: jax.random.fold_in(base, next(counter))
