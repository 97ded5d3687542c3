"""Atomic, checksummed checkpoints of arbitrary pytrees (no pickle)."""

import hashlib
import json
import os
import pathlib
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu
from jaxtyping import PyTree

from .._atomic import (
    atomic_path,
    atomic_write_bytes,
    checksum_matches,
    checksummed_path,
    file_sha256,
)

_NAME = re.compile(r"^ckpt_(\d{8,})\.json$")
_FORMAT_VERSION = 1


class CorruptCheckpointError(ValueError):
    """A checkpoint (or a checksummed model file) whose bytes do not match the checksum
    recorded with it, or whose record cannot be read: damaged on disk, not a mistake of the
    caller."""


def _is_typed_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree: PyTree) -> PyTree:
    return jtu.tree_map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree)


def _checkpoints(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """Complete checkpoints `(step, eqx_path)` in `directory`, sorted by step."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match is not None and entry.with_suffix(".eqx").is_file():
            found.append((int(match.group(1)), entry.with_suffix(".eqx")))
    return sorted(found)


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    state: PyTree,
    *,
    metadata: dict[str, Any] | None = None,
    keep: int | None = 3,
) -> pathlib.Path:
    """Saves `state` as checkpoint `directory/ckpt_{step:08d}.eqx` plus a JSON sidecar.

    The leaves are written with `eqx.tree_serialise_leaves` to a temporary file, fsynced and
    renamed into place; then `ckpt_{step:08d}.json` (step, metadata, SHA-256 of the `.eqx`
    file) is written the same way. A checkpoint counts as complete only once its JSON file
    exists, so a crash at any point leaves either the previous checkpoints or a complete new
    one. Older complete checkpoints beyond the newest `keep` are deleted (JSON first).

    Typed PRNG keys (`jax.random.key(...)`) in `state` are stored as their raw
    `jax.random.key_data` and re-wrapped by `restore_checkpoint` with
    `jax.random.wrap_key_data` when the corresponding leaf of `like` is a typed key.

    **Arguments:**

    - `directory`: created if missing.
    - `step`: non-negative integer naming the checkpoint; a checkpoint of the same step is
        replaced.
    - `state`: any pytree (model, optimiser state, keys, Python scalars, ...). Non-array
        leaves that are not Python scalars (e.g. functions) are not saved; they come from
        `like` on restore.
    - `metadata`: JSON-serialisable dict stored in the sidecar.
    - `keep`: number of most recent complete checkpoints to keep, or `None` for all.

    **Returns:**

    The path of the `.eqx` file.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"`step` must be a non-negative integer, got {step!r}.")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"`keep` must be a positive integer or None, got {keep!r}.")
    metadata = {} if metadata is None else dict(metadata)
    try:
        metadata_json = json.dumps(metadata)
    except TypeError as e:
        raise ValueError(f"`metadata` must be JSON-serialisable: {e}.") from None
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"ckpt_{step:08d}"
    eqx_path = directory / f"{name}.eqx"
    json_path = directory / f"{name}.json"
    # Replacing a checkpoint of the same step: make it incomplete first, so that a crash
    # between the two renames cannot pair the new `.eqx` with the old sidecar.
    json_path.unlink(missing_ok=True)
    with atomic_path(eqx_path) as tmp:
        eqx.tree_serialise_leaves(tmp, _unwrap_keys(state))
        checksum = file_sha256(tmp)
    record = {
        "format_version": _FORMAT_VERSION,
        "step": step,
        "file": eqx_path.name,
        "sha256": checksum,
        "metadata": json.loads(metadata_json),
    }
    atomic_write_bytes(json_path, (json.dumps(record, indent=2) + "\n").encode())
    if keep is not None:
        for _, old in _checkpoints(directory)[:-keep]:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    return eqx_path


def latest_checkpoint(directory: str | os.PathLike) -> pathlib.Path | None:
    """Path of the newest complete checkpoint (`.eqx` with its JSON sidecar) in `directory`.

    **Arguments:**

    - `directory`: a checkpoint directory (need not exist).

    **Returns:**

    The `.eqx` path of the checkpoint with the largest step, or `None` if there is none.
    `.eqx` files without a sidecar (an interrupted save) are ignored.
    """
    found = _checkpoints(pathlib.Path(directory))
    return found[-1][1] if found else None


def restore_checkpoint(
    path_or_directory: str | os.PathLike, like: PyTree
) -> tuple[PyTree, dict[str, Any]]:
    """Loads a checkpoint written by `save_checkpoint`, verifying its checksum.

    **Arguments:**

    - `path_or_directory`: a `.eqx` (or `.json`) checkpoint file, or a directory, in which
        case its `latest_checkpoint` is loaded.
    - `like`: a pytree with the structure, shapes and dtypes of the saved `state` (e.g. a
        freshly initialised model and optimiser state, or `eqx.filter_eval_shape` of one).
        Leaves of `like` that are typed PRNG keys are restored as typed keys.

    **Returns:**

    `(state, metadata)`: the restored pytree and the `metadata` dict given to
    `save_checkpoint`, with `"step"` added.
    """
    path = pathlib.Path(path_or_directory)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"No complete checkpoint in directory `{path}`.")
        path = latest
    eqx_path = path.with_suffix(".eqx")
    json_path = path.with_suffix(".json")
    if not json_path.is_file() or not eqx_path.is_file():
        raise FileNotFoundError(
            f"Checkpoint `{eqx_path}` is missing or incomplete (it needs both `{eqx_path.name}` "
            f"and `{json_path.name}`)."
        )
    try:
        record = json.loads(json_path.read_text())
        expected = record["sha256"]
        int(record["step"])
    except (ValueError, KeyError, TypeError):
        raise CorruptCheckpointError(
            f"Checkpoint sidecar `{json_path}` is not valid JSON."
        ) from None
    actual = file_sha256(eqx_path)
    if actual != expected:
        raise CorruptCheckpointError(
            f"Checkpoint `{eqx_path}` is corrupted: its sha256 {actual} does not match "
            f"{expected} recorded in `{json_path.name}`."
        )
    like_data = _unwrap_keys(like)
    try:
        state = eqx.tree_deserialise_leaves(eqx_path, like_data)
    except Exception as e:
        raise ValueError(
            f"Checkpoint `{eqx_path}` does not match the structure, shapes or dtypes of "
            f"`like`: {type(e).__name__}: {e}"
        ) from None
    state = jtu.tree_map(
        lambda template, x: (
            jax.random.wrap_key_data(x, impl=jax.random.key_impl(template))
            if _is_typed_key(template)
            else x
        ),
        like,
        state,
    )
    metadata = dict(record.get("metadata") or {})
    metadata["step"] = record["step"]
    return state, metadata


def restore_newest_valid(
    directory: str | os.PathLike, like: PyTree
) -> tuple[PyTree, dict[str, Any], pathlib.Path] | None:
    """Restores the newest complete checkpoint of `directory` whose checksum holds.

    A newer checkpoint that is corrupted (its bytes no longer match its checksum, or its
    sidecar is unreadable) is set aside, renamed `ckpt_*.eqx.corrupt` / `.json.corrupt`
    (kept for inspection, never deleted), with one warning naming it and the checkpoint used
    instead. A checkpoint that does not fit `like` is an error, not a reason to go back.

    **Returns:**

    `(state, metadata, path)` as `restore_checkpoint` returns them, plus the path restored;
    `None` if `directory` holds no complete checkpoint.

    **Raises:**

    `CorruptCheckpointError` if every checkpoint is corrupted (then none is renamed);
    `ValueError` as `restore_checkpoint` for one that does not fit `like`.
    """
    corrupted: list[tuple[pathlib.Path, CorruptCheckpointError]] = []
    for _, path in reversed(_checkpoints(pathlib.Path(directory))):
        try:
            state, metadata = restore_checkpoint(path, like)
        except CorruptCheckpointError as e:
            corrupted.append((path, e))
            continue
        if corrupted:
            for bad, _ in corrupted:
                for part in (bad.with_suffix(".json"), bad):
                    if part.exists():
                        os.replace(part, part.with_name(part.name + ".corrupt"))
            names = ", ".join(bad.name for bad, _ in corrupted)
            warnings.warn(
                f"{names} corrupted ({corrupted[0][1]}); set aside as *.corrupt, resuming from "
                f"the older {path.name}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state, metadata, path
    if corrupted:
        raise CorruptCheckpointError(
            f"every checkpoint in `{directory}` is corrupted, the newest: {corrupted[0][1]}"
        )
    return None


def _sidecar(path: pathlib.Path) -> pathlib.Path:
    return path.with_suffix(".json")


def save_model_file(path: str | os.PathLike, model: PyTree) -> None:
    """Writes `model` to `path` with `eqx.tree_serialise_leaves` (atomically) and its SHA-256
    to the sidecar `path.with_suffix(".json")`, which `load_model_file` checks.

    The sidecar is written first and names both the new and the previous checksum, so that a
    crash between the two renames leaves a pair that still verifies. The `.eqx` file stays
    loadable by `eqx.tree_deserialise_leaves` alone.
    """
    path = pathlib.Path(path)
    with checksummed_path(path, _sidecar(path)) as tmp:
        eqx.tree_serialise_leaves(tmp, model)


def remove_model_file(path: str | os.PathLike) -> None:
    """Deletes a model file written by `save_model_file` and its sidecar."""
    path = pathlib.Path(path)
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


def load_model_file(path: str | os.PathLike, like: PyTree) -> PyTree:
    """Reads a model written by `save_model_file`, after checking its SHA-256.

    A file without a sidecar (written before models had checksums) is read with a warning.

    **Raises:**

    `CorruptCheckpointError` naming the file if it does not match its checksum, if the sidecar
    is damaged, or if the file is not a serialised model of the structure of `like` (e.g.
    truncated).
    """
    path = pathlib.Path(path)
    sidecar = _sidecar(path)
    if not path.is_file():
        raise FileNotFoundError(f"`{path}` does not exist")
    try:
        matches = checksum_matches(path, sidecar)
    except ValueError as e:
        raise CorruptCheckpointError(str(e)) from None
    if matches is None:  # written before models had checksums: readable, not verifiable
        warnings.warn(
            f"`{path}` has no checksum file `{sidecar.name}`; it is read unverified",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not matches:
        raise CorruptCheckpointError(
            f"`{path}` is corrupted: its sha256 does not match the one recorded in `{sidecar.name}`"
        )
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as e:
        raise CorruptCheckpointError(
            f"`{path}` does not hold a model of the run's structure ({type(e).__name__})"
        ) from None


def history_digest(records: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of metrics records as `metrics.jsonl` holds them (one JSON object a line): a
    checkpoint stores it, so that resuming notices an edited metrics file."""
    digest = hashlib.sha256()
    for record in records:
        digest.update((json.dumps(record) + "\n").encode())
    return digest.hexdigest()
