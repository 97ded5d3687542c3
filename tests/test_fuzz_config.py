"""Property-based fuzzing of configs: files, keys, values and `--set` overrides.

Every malformed config is refused before any work starts: `ConfigError` with a one-line message
naming the offending key (or the file, or the override) and what is allowed; through `sciml run`
that is exit status 2, one `error:` line on stderr and nothing written. Examples are
derandomized, so a failure reproduces; the bugs these tests found are kept as explicit examples
in `test_regressions`.
"""

import contextlib
import io
import json
import math
import os
import string
import tempfile
import tomllib
from pathlib import Path
from unittest import mock

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sciml._app.cli import main
from sciml._app.config import (
    PINN_SCHEMA,
    SCHEMA,
    ConfigError,
    Option,
    apply_overrides,
    load_config,
    validate_config,
)
from sciml._catalogue import PINN_BENCHMARKS

REPO = Path(__file__).parent.parent
SAMPLES = [p.read_bytes() for p in sorted((REPO / "experiments").glob("*.toml"))]


def fuzz(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def _leaves(schema, prefix=()):
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from _leaves(spec, (*prefix, key))
        else:
            yield (*prefix, key), spec


def _tables(schema, prefix=()):
    yield prefix, schema
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from _tables(spec, (*prefix, key))


SCHEMAS = {"operator": SCHEMA, "pinn": PINN_SCHEMA}
LEAVES = [(kind, path, opt) for kind, schema in SCHEMAS.items() for path, opt in _leaves(schema)]
TABLES = [(kind, path, t) for kind, schema in SCHEMAS.items() for path, t in _tables(schema)]
KEYS = sorted({".".join(path) for _, path, _ in LEAVES})


def _nest(kind: str, *items) -> dict:
    """A raw config of `kind` with each `(path, value)` of `items` set."""
    raw = {"kind": "pinn"} if kind == "pinn" else {}
    for path, value in items:
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


def leaf(kind: str, key: str, value) -> tuple:
    """An explicit `(kind, path, option, value)` case."""
    path = tuple(key.split("."))
    return kind, path, dict(_leaves(SCHEMAS[kind]))[path], value


def leaves_with(values):
    """`(kind, path, option, value)` for any schema key, `value` drawn from `values(option)`."""
    return st.sampled_from(LEAVES).flatmap(lambda t: values(t[2]).map(lambda v: (*t, v)))


def one_line(message: str, *fragments: str) -> str:
    assert message and len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def refused(raw: dict, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return one_line(str(info.value), *fragments)


def names_a_key(message: str) -> None:
    one_line(message)
    assert message.startswith(("config key '", "unknown config key ")), message


# --- values --------------------------------------------------------------------------------

_text = st.text(max_size=12)
_tables_values = st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=2)
_lists = st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3)
_dates = st.one_of(st.dates(), st.datetimes(), st.times())
_nonintegral = st.floats().filter(lambda x: not x.is_integer())
_HUGE_INTS = [2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 16**600]
_ints = st.one_of(st.integers(), st.integers(-(2**80), 2**80), st.sampled_from(_HUGE_INTS))
_floats = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, -1.0, 5e-324, 1e-320, 1e308, -1e308, math.inf, -math.inf]),
    st.just(math.nan),
)


def wrong_type(option: Option):
    """Values a TOML file can hold that are not of the option's type."""
    common = [_tables_values, _dates]
    if option.type is int:
        return st.one_of(_text, _nonintegral, st.booleans(), _lists, *common)
    if option.type is float:
        return st.one_of(_text, st.booleans(), _lists, *common)
    if option.type is str:
        return st.one_of(st.integers(), st.floats(), st.booleans(), _lists, *common)
    if option.type is bool:
        return st.one_of(st.integers(), st.floats(), _text, _lists, *common)
    if option.type is list:
        if option.item_type is int:
            bad_item = st.one_of(_text, st.booleans(), _nonintegral, st.lists(st.integers()))
        elif option.item_type is str:
            bad_item = st.one_of(st.integers(), st.booleans(), st.floats(), _tables_values)
        else:
            bad_item = st.one_of(_text, st.booleans(), st.lists(st.floats()), _tables_values)
        with_bad_item = st.tuples(st.lists(st.integers(1, 9), max_size=2), bad_item).map(
            lambda t: [*t[0], t[1]]
        )
        return st.one_of(st.integers(), st.floats(), _text, st.booleans(), with_bad_item, *common)
    if option.type is dict:
        return st.one_of(st.integers(), st.floats(), _text, st.booleans(), _lists, _dates)
    assert option.type == (int, str), option.type
    return st.one_of(st.floats(), st.booleans(), _lists, *common)


def right_type(option: Option):
    """Values of the option's type, from typical to extreme (negative, zero, huge, NaN, inf)."""
    if option.type is int:
        return _ints
    if option.type is float:
        return st.one_of(_floats, st.sampled_from([10**400, -(10**400)]))
    if option.type is str:
        extreme = ["", " ", "a b", "x" * 300, "\u00e9", "\n", "all", "ALL", "gelu\x00"]
        return st.one_of(st.text(max_size=20), st.sampled_from(extreme))
    if option.type is bool:
        return st.booleans()
    if option.type is list:
        item = {int: _ints, str: _text}.get(option.item_type, _floats)
        return st.lists(item, max_size=5)
    if option.type is dict:
        return _tables_values
    return st.one_of(_ints, st.text(max_size=5), st.just("all"))


def allowed(option: Option, value) -> bool:
    """Whether `value` (of the option's type) passes the option's own check."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if isinstance(value, list) and not all(
        -(2**63) <= v < 2**63 if isinstance(v, int) else isinstance(v, str) or math.isfinite(v)
        for v in value
    ):
        return False
    if option.type is float and isinstance(value, int):
        value = float(value)
    if option.choices is not None and value not in option.choices:
        return False
    return option.check is None or bool(option.check(value))


def toml_value():
    return st.one_of(
        st.integers(), st.floats(), st.booleans(), _text, _lists, _tables_values, _dates
    )


# --- unknown keys (typos of real keys) -----------------------------------------------------


def typos(word: str):
    at = st.integers(0, len(word))
    letters = st.sampled_from(string.ascii_lowercase + "_-. 0\n\u00e9")
    swaps = [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)]
    return st.one_of(
        st.tuples(at, letters).map(lambda t: word[: t[0]] + t[1] + word[t[0] :]),
        at.filter(lambda i: i < len(word)).map(lambda i: word[:i] + word[i + 1 :]),
        st.sampled_from(swaps or [word + word]),
        st.sampled_from(
            [
                word.upper(),
                word.title(),
                word.replace("_", "-"),
                word + "s",
                " " + word,
                word + "\n",
            ]
        ),
    ).filter(lambda typo: typo != word)


def unknown_keys():
    """`(kind, path)` of a near miss of a real key, in any table of either schema."""
    return st.sampled_from(TABLES).flatmap(
        lambda t: (
            st.sampled_from(sorted(t[2]))
            .flatmap(typos)
            .filter(lambda typo: typo not in t[2])
            .map(lambda typo: (t[0], (*t[1], typo)))
        )
    )


@fuzz(200)
@given(case=unknown_keys(), value=toml_value())
@example(case=("operator", ("trian\nx",)), value={})
@example(case=("pinn", ("model", "mlp", "widht")), value=3)
def test_unknown_keys_at_every_level(case, value):
    kind, path = case
    full = ".".join(path)
    refused(_nest(kind, (path, value)), "unknown config key ", repr(full), "; allowed here: ")


# --- wrong types ---------------------------------------------------------------------------


@fuzz(300)
@given(case=leaves_with(wrong_type))
@example(case=leaf("operator", "model.modes", [12, 12.5]))
@example(case=leaf("pinn", "train.devices", 1.0))
def test_wrong_types_for_every_key(case):
    kind, path, _, value = case
    key = ".".join(path)
    message = refused(_nest(kind, (path, value)), f"config key '{key}' = ", " is invalid: ")
    assert "expected" in message or "allowed" in message


@fuzz(30)
@given(
    table=st.sampled_from([t for t in TABLES if t[1]]),
    value=st.one_of(st.integers(), _text, st.booleans(), _lists, st.floats()),
)
def test_scalars_where_tables_belong(table, value):
    kind, path, _ = table
    refused(_nest(kind, (path, value)), f"config key '{'.'.join(path)}' = ", "expected a table")


# --- out-of-range values -------------------------------------------------------------------


@fuzz(300)
@given(case=leaves_with(right_type))
@example(case=leaf("operator", "train.learning_rate", 10**400))
@example(case=leaf("operator", "seed", 2**64))
@example(case=leaf("operator", "data.resolution", 16**600))
@example(case=leaf("operator", "name", "x" * 300))
@example(case=leaf("pinn", "train.weights", [math.inf, 1.0]))
@example(case=leaf("pinn", "train.learning_rate", math.nan))
def test_out_of_range_values(case):
    kind, path, option, value = case
    key = ".".join(path)
    raw = _nest(kind, (path, value))
    if not allowed(option, value):
        message = refused(raw, f"config key '{key}' = ", " is invalid: ")
        assert "allowed" in message or "expected" in message
        return
    try:  # allowed for this key; a cross-check on the whole config may still refuse it
        validate_config(raw)
    except ConfigError as e:
        names_a_key(str(e))


def _recipe_and_model(kind: str):
    if kind == "pinn":
        return st.tuples(
            st.just(("problem", "name")),
            st.sampled_from(PINN_SCHEMA["problem"]["name"].choices),
        ).map(lambda t: [t])
    return st.tuples(
        st.sampled_from(SCHEMA["data"]["recipe"].choices),
        st.sampled_from(SCHEMA["model"]["name"].choices),
    ).map(lambda t: [(("data", "recipe"), t[0]), (("model", "name"), t[1])])


@st.composite
def extreme_configs(draw):
    """A recipe and model (or PINN problem) and up to four keys set to anything at all."""
    kind = draw(st.sampled_from(["operator", "pinn"]))
    items = draw(_recipe_and_model(kind))
    leaves = [(path, option) for k, path, option in LEAVES if k == kind]
    for path, option in draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=4)):
        items.append((path, draw(st.one_of(right_type(option), wrong_type(option)))))
    return kind, items


@fuzz(300)
@given(case=extreme_configs())
@example(case=("operator", [(("model", "name"), "mgno"), (("model", "levels"), 2**62)]))
@example(case=("operator", [(("data", "recipe"), "burgers"), (("data", "dt"), 1e-320)]))
@pytest.mark.timeout(300)
def test_combinations_of_extreme_values_never_crash_or_hang(case):
    kind, items = case
    try:
        validate_config(_nest(kind, *items))
    except ConfigError as e:
        names_a_key(str(e))


# --- missing files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_config")


@fuzz(50)
@given(name=st.text(min_size=1, max_size=300), kind=st.sampled_from(["file", "dir", "config"]))
def test_missing_files(workdir, name, kind):
    missing = f"{workdir}/no-such-dir/{name}"
    if kind == "config":
        with pytest.raises(ConfigError) as info:
            load_config(missing)
        one_line(str(info.value), "config file ", "does not exist; expected a TOML file")
        return
    path = str(workdir) if kind == "dir" else missing
    what = "it is a directory" if kind == "dir" else "no such file"
    refused(_nest("operator", (("data", "path"), path)), "config key 'data.path' = ", what)


# --- broken TOML ---------------------------------------------------------------------------


def _mutations():
    sample = st.sampled_from(SAMPLES)
    truncated = st.tuples(sample, st.floats(0, 1)).map(lambda t: t[0][: int(t[1] * len(t[0]))])
    garbage = st.tuples(sample, st.floats(0, 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][: int(t[1] * len(t[0]))] + t[2] + t[0][int(t[1] * len(t[0])) :]
    )
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        truncated,
        garbage,
        st.sampled_from(
            [
                b"",
                b"   \n\n",
                b"# only a comment\n",
                b"\xef\xbb\xbf",
                b"[train\nepochs = 3",
                b'name = "caf\xe9"\n',  # Latin-1, not UTF-8
                b"seed = " + b"9" * 5000 + b"\n",
                b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
                b"\x89HDF\r\n\x1a\n\x00\x00",
                b"[train]\nepochs = 3\n[train]\nepochs = 4\n",
            ]
        ),
    )


@fuzz(200)
@given(content=_mutations())
def test_broken_toml_files(workdir, content):
    path = workdir / "broken.toml"
    path.write_bytes(content)
    try:
        parsed = tomllib.loads(content.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        parsed = None
    try:
        load_config(path)
    except ConfigError as e:
        message = str(e)
        if parsed is None:
            one_line(message, f"config file {str(path)!r} is not valid TOML: ")
        elif not parsed:
            one_line(message, f"config file {str(path)!r} is empty")
        else:
            names_a_key(message)
    else:
        assert parsed, "a config without keys was accepted"


# --- `--set` overrides ---------------------------------------------------------------------

_override_keys = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).flatmap(typos),
    st.sampled_from(["", ".", "..", ".train", "train.", "train..epochs", " ", "a b.c", "x\ny"]),
    st.text(max_size=15),
)
_override_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "[1,",
            "{a=",
            '"unterminated',
            "1e400",
            "nan",
            "-inf",
            "0x" + "f" * 40,
            "9" * 5000,
            "3\n[x]",
            "3 # a comment",
            "[" * 3000 + "]" * 3000,
            "{epochs = 3}",
            "true",
            "[8, 8]",
        ]
    ),
)
_overrides = st.one_of(
    st.text(max_size=30).filter(lambda t: "=" not in t),
    st.tuples(_override_keys, _override_values).map(lambda t: f"{t[0]}={t[1]}"),
)


@fuzz(200)
@given(
    overrides=st.lists(_overrides, min_size=1, max_size=3), kind=st.sampled_from(sorted(SCHEMAS))
)
@example(overrides=["train.epochs=3\n[foo]"], kind="operator")
def test_bad_overrides(overrides, kind):
    raw = {"kind": "pinn"} if kind == "pinn" else {}
    try:
        validate_config(apply_overrides(raw, overrides))
    except ConfigError as e:
        message = one_line(str(e))
        assert message.startswith(("--set ", "config key '", "unknown config key ")), message


# --- the same through `sciml run` ----------------------------------------------------------


def _cli_cases():
    """(config file bytes, --set overrides) that `sciml run` must refuse."""

    def dump(raw):
        return tomli_w.dumps(raw).encode()

    typo = unknown_keys().map(lambda case: _nest(case[0], (case[1], 1)))
    bad_type = leaves_with(wrong_type).map(lambda case: _nest(case[0], (case[1], case[3])))
    missing = st.just({"data": {"path": "no/such/file.h5"}})
    broken = _mutations().filter(lambda b: _unparsable(b))
    return st.one_of(
        typo.map(lambda raw: (dump(raw), [])),
        bad_type.map(lambda raw: (dump(raw), [])),
        missing.map(lambda raw: (dump(raw), [])),
        broken.map(lambda content: (content, [])),
        st.just((b"", [])),
        _overrides.filter(_bad_override).map(lambda o: (b'name = "t"\n', [o])),
    )


def _unparsable(content: bytes) -> bool:
    try:
        tomllib.loads(content.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return True
    return False


def _bad_override(text: str) -> bool:
    try:
        validate_config(apply_overrides({"name": "t"}, [text]))
    except ConfigError:
        return True
    return False


@fuzz(20)
@given(case=_cli_cases())
def test_cli_refuses_malformed_configs_with_one_line_and_writes_nothing(case):
    content, overrides = case
    stderr, stdout = io.StringIO(), io.StringIO()
    started = AssertionError("a malformed config started a run")
    with tempfile.TemporaryDirectory() as d:
        Path(d, "c.toml").write_bytes(content)
        cwd = os.getcwd()
        os.chdir(d)
        try:
            with (
                mock.patch("sciml._app.cli._run_and_report", side_effect=started),
                contextlib.redirect_stderr(stderr),
                contextlib.redirect_stdout(stdout),
            ):
                code = main(
                    ["run", "c.toml", "--runs-dir", "runs", *(f"--set={o}" for o in overrides)]
                )
        finally:
            os.chdir(cwd)
        lines = stderr.getvalue().splitlines()
        assert code == 2, stderr.getvalue()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert os.listdir(d) == ["c.toml"]  # no run directory, no data, nothing else


# --- the bugs these tests found, as plain regression cases ---------------------------------


@pytest.mark.parametrize(
    "raw, fragments",
    [
        # A key with a newline made a two-line message.
        ({"trian\nx": {}}, ["unknown config key 'trian\\nx'"]),
        # An integer too large for a float raised OverflowError.
        ({"train": {"learning_rate": 10**400}}, ["'train.learning_rate'", "finite"]),
        # Integers beyond 64 bits passed (seed 2**64 then crashed jax.random.key).
        ({"seed": 2**64}, ["'seed' = 18446744073709551616", "below 2**63"]),
        # ... and one too long to print raised ValueError while formatting the message.
        ({"seed": 10**5000}, ["'seed' = <an integer too large to print>"]),
        # MgNO with huge model.levels hung computing 2 ** (levels - 1).
        ({"model": {"name": "mgno", "levels": 2**62}}, ["'model.levels'", "at most 7"]),
        # A tiny dt overflowed the recipe's step count (OverflowError).
        (
            {
                "data": {"recipe": "burgers", "resolution": 64, "dt": 1e-320},
                "model": {"modes": [8]},
            },
            ["'data.dt' = 1e-320", "'burgers'"],
        ),
        # inf passed as a loss weight.
        ({"kind": "pinn", "train": {"weights": [math.inf, 1.0]}}, ["'train.weights'", "finite"]),
        # A data.path that does not exist passed validation; the run directory was made first.
        ({"data": {"path": "no/such.h5"}}, ["'data.path' = 'no/such.h5'", "no such file"]),
        # A 300-character name passed; making the run directory then failed (exit 1).
        ({"name": "x" * 300}, ["'name'", "at most 100 characters"]),
    ],
)
def test_regressions(raw, fragments):
    refused(raw, *fragments)


def test_regressions_that_were_valid_or_crashed_in_files(tmp_path):
    # Integers in a list of floats are numbers, as they are for a float key.
    weights = validate_config({"kind": "pinn", "train": {"weights": [1, 100]}})["train"]
    assert weights["weights"] == [1.0, 100.0]
    # An override with more TOML after the value was silently cut to its first value.
    with pytest.raises(ConfigError, match="'train.epochs' = '3\\\\n\\[foo\\]'"):
        validate_config(apply_overrides({}, ["train.epochs=3\n[foo]"]))
    cases = {
        "big.toml": (b"seed = " + b"9" * 5000, "not valid TOML: Exceeds the limit"),  # ValueError
        "deep.toml": (b"x = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),  # RecursionError
        "empty.toml": (b"# nothing\n", "is empty (no keys)"),  # ran every default
    }
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / name)
        one_line(str(info.value), repr(str(tmp_path / name)), fragment)
    with pytest.raises(ConfigError) as info:  # said "does not exist"
        load_config(tmp_path)
    one_line(str(info.value), "is a directory")
    (tmp_path / "bom.toml").write_bytes(b'\xef\xbb\xbfname = "x"\n')  # a UTF-8 BOM is harmless
    assert load_config(tmp_path / "bom.toml")["name"] == "x"


# --- extreme sizes: refused from the config alone, fast, without allocating -----------------

# Each base config (a shipped experiment, with overrides) and the size keys that apply to it,
# with the smallest value that is absurd for that key on a 24 GB machine: 10^6 points per axis
# or channels, but 10^8 samples (10^6 Burgers samples are a legitimate 8 GB) and 10^7 DeepONet
# basis functions or PINN reference points per axis. The keys' own validation may refuse a
# value first (a resolution no MgNO level divides), which is as good.
_WIDE = 10**6
_OPERATOR_DATA = {"data.n_train": 10**8, "data.n_test": 10**8}
_FNO = {
    "model.width": _WIDE,
    "model.depth": _WIDE,
    "model.modes": _WIDE,
    "model.projection_channels": _WIDE,
    "train.batch_size": _WIDE,
}
_MGNO = {
    "model.channels": _WIDE,
    "model.depth": _WIDE,
    "model.levels": _WIDE,
    "model.smoothing_steps": _WIDE,
}
_DEEPONET = {
    "model.branch_widths": _WIDE,
    "model.trunk_widths": _WIDE,
    "model.basis": 10**7,
    "train.batch_size": _WIDE,
}
_NAVIER_STOKES = {**_OPERATOR_DATA, "data.record_steps": _WIDE}
_MLP = {"model.mlp.width": _WIDE, "model.mlp.depth": _WIDE, "model.mlp.fourier_features": _WIDE}
_PIG = {
    "model.pig.num_gaussians": _WIDE,
    "model.pig.feature_dim": _WIDE,
    "model.pig.hidden": _WIDE,
    "model.pig.layers": _WIDE,
}
_GRID = {"data.resolution": _WIDE, "data.solve_resolution": 10**8}
_SIZE_BASES = [
    # (darcy_fno's solve grid of 421 points fits its resolution 85 only: the default fits all)
    ("darcy_fno", ["data.solve_resolution=0"], {**_GRID, **_OPERATOR_DATA, **_FNO}),
    ("burgers_fno", [], {**_GRID, **_OPERATOR_DATA, **_FNO}),
    ("darcy_mgno", [], {**_GRID, **_OPERATOR_DATA, **_MGNO}),
    ("burgers_deeponet", ["model.sensors=0"], {**_GRID, **_OPERATOR_DATA, **_DEEPONET}),
    ("antiderivative_deeponet", [], {"data.resolution": _WIDE, **_OPERATOR_DATA, **_DEEPONET}),
    ("navier_stokes_fno", [], {**_NAVIER_STOKES, **_FNO}),
    ("navier_stokes_fno3d", [], {**_NAVIER_STOKES, **_FNO}),
    ("navier_stokes_mgno", [], {**_NAVIER_STOKES, **_MGNO}),
    ("navier_stokes_deeponet", [], {**_NAVIER_STOKES, **_DEEPONET}),
]
for _problem, _benchmark in PINN_BENCHMARKS.items():
    _terms = _benchmark.terms
    _stem = {"poisson_2d": "poisson", "helmholtz_2d": "helmholtz"}.get(_problem, _problem)
    _points = {f"train.num_{term}": _WIDE for term in _terms}
    if _benchmark.reference is not None:
        _points["problem.reference_resolution"] = 10**7
    _SIZE_BASES.append((f"pinn_{_stem}", ["model.name='pig'"], {**_points, **_PIG}))
    _SIZE_BASES.append((f"pinn_{_stem}", ["model.name='mlp'"], {**_points, **_MLP}))


@st.composite
def extreme_sizes(draw):
    """`(config file, --set overrides, keys set to extreme sizes)` for one base config."""
    stem, overrides, keys = draw(st.sampled_from(_SIZE_BASES))
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), min_size=1, max_size=3, unique=True))
    config = tomllib.loads((REPO / "experiments" / f"{stem}.toml").read_text())
    values = {}
    for key in chosen:
        low = keys[key]
        values[key] = draw(st.one_of(st.integers(low, 2**62), st.sampled_from([low, 10**9, 2**62])))
    data = config.get("data", {})
    if "data.solve_resolution" in values:  # a solve grid the resolution fits (extreme, valid)
        s, solve = (
            values.get("data.resolution", data.get("resolution")),
            values["data.solve_resolution"],
        )
        if data.get("recipe") == "darcy":
            values["data.solve_resolution"] = (s - 1) * -(-solve // (s - 1)) + 1
        else:
            values["data.solve_resolution"] = 2 * s * -(-solve // (2 * s))
    overrides = list(overrides)
    for key, value in values.items():
        default = config
        for part in key.split("."):
            default = default.get(part, {}) if isinstance(default, dict) else {}
        if isinstance(default, list) or key == "model.modes":  # the same length, all extreme
            length = len(default) if isinstance(default, list) and default else 1
            value = [value] * (2 if key.endswith("_widths") else length)
        overrides.append(f"{key}={value}")
        if key == "data.record_steps":  # keep t_final / dt / record_steps a whole number
            overrides.append(f"data.dt={data['t_final'] / value!r}")
    return str(REPO / "experiments" / f"{stem}.toml"), overrides, chosen


def _sizes_set_by_the_file(path: str) -> list[str]:
    """The model sizes a config file itself sets away from their defaults: the budget may
    rightly name one of them (resetting flow_mixing's 4000 Gaussians to the default 400
    saves more than resetting one of two huge point counts)."""
    from sciml._app.config import PINN_SCHEMA, SCHEMA

    config = tomllib.loads(Path(path).read_text())
    schema = PINN_SCHEMA if config.get("kind") == "pinn" else SCHEMA
    found = []
    for section in ("pig", "mlp"):
        for key, value in config.get("model", {}).get(section, {}).items():
            option = schema.get("model", {}).get(section, {})
            option = option.get(key) if isinstance(option, dict) else None
            if option is not None and value != option.default:
                found.append(f"model.{section}.{key}")
    return found


_BUDGET_WORKER = """
import json, sys, time
from sciml._app.budget import check_run_budget
from sciml._app.config import ConfigError, load_config
# what any run imports, whatever its sizes
import sciml._app.experiment, sciml._app.operator_run, sciml.data._recipes.generate

for line in sys.stdin:
    path, overrides = json.loads(line)
    start = time.perf_counter()
    try:
        check_run_budget(load_config(path, overrides))
        message = None
    except ConfigError as e:
        message = str(e)
    except Exception as e:  # reported, so that the test names the case
        message = f"CRASH {type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    # VmHWM: this process's own peak. Linux keeps ru_maxrss across exec, so it would report a
    # large parent's (e.g. a pytest worker's) peak at the fork.
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    print(json.dumps({"message": message, "seconds": seconds, "peak": peak}), flush=True)
"""


@pytest.fixture(scope="module")
def budget_worker(tmp_path_factory):
    """One subprocess that checks configs as `sciml run` does before it makes the run
    directory (`load_config`, then `check_run_budget`), on a 24 GB machine, one case a line,
    and reports each case's time and its own peak RSS so far: the peak over every case."""
    import subprocess
    import sys

    env = {**os.environ, "SCIML_MEMORY_BYTES": "24e9", "SCIML_DISK_BYTES": "100e9"}
    worker = subprocess.Popen(
        [sys.executable, "-c", _BUDGET_WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path_factory.mktemp("budget"),
    )

    def check(path: str, overrides: list[str]) -> dict:
        worker.stdin.write(json.dumps([path, overrides]) + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        assert line, "the budget worker died"
        return json.loads(line)

    yield check
    worker.stdin.close()
    worker.wait(timeout=30)


@fuzz(200)
@given(case=extreme_sizes())
@example(case=(str(REPO / "experiments/quickstart.toml"), ["data.resolution=1000000000"], []))
@example(case=(str(REPO / "experiments/quickstart.toml"), ["data.n_train=10000000000000"], []))
@pytest.mark.timeout(120)
def test_extreme_sizes_are_refused_fast_and_small(budget_worker, case):
    path, overrides, keys = case
    keys = [*(keys or [o.split("=")[0] for o in overrides]), *_sizes_set_by_the_file(path)]
    result = budget_worker(path, overrides)
    assert result["message"] is not None, f"accepted: {overrides}"
    assert not result["message"].startswith("CRASH"), (overrides, result["message"])
    names_a_key(result["message"])
    assert any(f"'{key}'" in result["message"] for key in keys), (overrides, result["message"])
    assert result["seconds"] < 5, result
    assert result["peak"] < 2**30, result  # peak RSS of the checking process so far
