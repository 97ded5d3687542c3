"""The dataset of an operator config's `[data]` table: generated from its recipe and cached,
or read from `data.path`; checked against the config; cut into the task's inputs and targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import data as sdata
from .._atomic import RunLock, remove_temporaries
from .._catalogue import get_recipe
from .config import reads_own_file


def recipe_options(data_cfg: dict) -> dict[str, Any]:
    """The recipe-specific options of a `[data]` table that differ from the recipe's defaults
    (0 / false in a config means "the recipe's default")."""
    return {k: data_cfg[k] for k in get_recipe(data_cfg["recipe"]).options if data_cfg[k]}


def dataset_path(data_cfg: dict) -> Path:
    """Where the dataset of a `[data]` table lives: the given path or a cache file name that
    encodes every setting the data depend on."""
    if data_cfg["path"]:
        return Path(data_cfg["path"])
    name = get_recipe(data_cfg["recipe"]).cache_name(
        data_cfg["resolution"],
        recipe_options(data_cfg),
        data_cfg["n_train"] + data_cfg["n_test"],
        data_cfg["seed"],
    )
    return Path(data_cfg["cache_dir"]) / name


def obtain_dataset(data_cfg: dict, *, progress: bool = True) -> sdata.Dataset:
    """Loads the configured dataset, generating and caching it first if needed; with
    `data.stream` its arrays stay on disk (`sciml.data.open_dataset`)."""
    path = dataset_path(data_cfg)
    n = data_cfg["n_train"] + data_cfg["n_test"]
    recipe = get_recipe(data_cfg["recipe"])
    if not path.exists():
        if data_cfg["path"]:
            raise sdata.DatasetError(f"config key 'data.path' = {str(path)!r}: no such file")
        # Runs started together (a sweep in several shells) generate a cached file once: the
        # others wait for it. Under the lock, the temporary file of a generation that was
        # killed is deleted, since no other process is writing this one.
        with RunLock(path.parent, wait=True, lock_name=f".{path.name}.lock"):
            remove_temporaries(path.parent, target=path.name)
            if not path.exists():
                print(f"generating {n} {recipe.name} samples -> {path}", flush=True)
                sdata.make_dataset(
                    recipe.name,
                    path,
                    n=n,
                    resolution=data_cfg["resolution"],
                    seed=data_cfg["seed"],
                    progress=progress,
                    **recipe_options(data_cfg),
                )
    read = sdata.open_dataset if data_cfg.get("stream", False) else sdata.load_dataset
    dataset = read(path)
    if not data_cfg["path"]:
        _check_cached(path, dataset, data_cfg, recipe)
    if len(dataset) < n:
        raise sdata.DatasetError(
            f"{path} holds {len(dataset)} samples but data.n_train + data.n_test = {n}"
        )
    spatial = (data_cfg["resolution"],) * recipe.num_spatial_dims
    if dataset.inputs.shape[2:] != spatial:
        raise sdata.DatasetError(
            f"{path} has spatial shape {dataset.inputs.shape[2:]} but data.resolution = "
            f"{data_cfg['resolution']} needs {spatial} for the {recipe.name} recipe"
        )
    return dataset


def _check_cached(path: Path, dataset: sdata.Dataset, data_cfg: dict, recipe) -> None:
    """A cached file must hold what its name promises: the recipe, its settings and the seed
    of the config (a file replaced or renamed in the cache would silently change the data)."""
    expected = json.loads(
        json.dumps(recipe.info(data_cfg["resolution"], **recipe_options(data_cfg)), sort_keys=True)
    )
    held = dataset.attrs.get("recipe")
    pairs = [("seed", dataset.attrs.get("seed"), data_cfg["seed"])]
    if isinstance(held, dict):
        pairs += [(k, held.get(k), v) for k, v in expected.items()]
    else:
        pairs.append(("recipe", held, expected))
    for name, was, wanted in pairs:
        if was != wanted:
            raise sdata.DatasetError(
                f"cached dataset {path} does not match the config: it was made with {name} = "
                f"{was!r}, the config asks for {wanted!r} (the file was replaced, renamed or "
                "made by another version); delete it to regenerate it"
            )


def task_arrays(config: dict, dataset: sdata.Dataset, start: int, stop: int):
    """The model's `(inputs, targets)` for samples `start:stop` of the dataset.

    For `task.kind = 'direct'` these are the dataset's inputs and outputs; for trajectory
    tasks the first `task.t_in` recorded frames are the input and the next `task.t_out` frames
    the target (the initial condition itself is not used, as in the FNO paper). Nothing is
    read here: NumPy views of arrays in memory, `OnDiskArray` subsets of arrays on disk.
    """
    rows = slice(start, stop)
    if config["task"]["kind"] == "direct" and not get_recipe(config["data"]["recipe"]).trajectory:
        return _part(dataset.inputs, rows), _part(dataset.outputs, rows)
    t_in, t_out = config["task"]["t_in"], config["task"]["t_out"]
    frames = dataset.outputs
    return _part(frames, rows, slice(0, t_in)), _part(frames, rows, slice(t_in, t_in + t_out))


def _part(array, rows: slice, channels: slice = slice(None)):
    if hasattr(array, "subset"):  # on disk (`OnDiskArray`, or your own HDF5 file streamed)
        return array.subset(rows=rows, channels=channels)
    return array[rows, channels]


def read_own_file(data_cfg: dict, key: str = "path") -> sdata.Dataset:
    """The arrays of your own file named by `data.path` (or `data.test_path`), as the
    `[data]` table describes them; on disk with `data.stream` where the format allows."""
    return sdata.read_arrays(
        data_cfg[key],
        inputs=data_cfg["inputs"],
        outputs=data_cfg["outputs"],
        channels=data_cfg["channels"],
        stride=data_cfg["stride"],
        stream=data_cfg["stream"],
    )


def split_arrays(config: dict, *, progress: bool = True):
    """The task's `((x_train, y_train), (x_test, y_test))` of a validated operator config:
    the first data.n_train samples for training; for testing the next data.n_test samples of
    a recipe's data, the first data.n_test of data.test_path, or else the last data.n_test of
    data.path."""
    data_cfg = config["data"]
    n_train, n_test = data_cfg["n_train"], data_cfg["n_test"]
    if not reads_own_file(data_cfg):
        dataset = obtain_dataset(data_cfg, progress=progress)
        test_start = n_train
        test = dataset
    else:
        dataset = read_own_file(data_cfg)
        test = read_own_file(data_cfg, "test_path") if data_cfg["test_path"] else dataset
        test_start = 0 if data_cfg["test_path"] else len(dataset) - n_test
        for name, part, needed in (("path", dataset, n_train), ("test_path", test, n_test)):
            if len(part) < needed:  # the file changed since the config was checked
                raise sdata.DatasetError(
                    f"{data_cfg[name]} holds {len(part)} samples but the config needs "
                    f"{needed}; the file changed since the run started"
                )
    return (
        task_arrays(config, dataset, 0, n_train),
        task_arrays(config, test, test_start, test_start + n_test),
    )
