"""The application layer: what `sciml` on the command line and `sciml run CONFIG` are made of.

- `cli`: the command line (`sciml run | sweep | eval | data`), one-line errors, exit statuses.
- `config`: the config schema (built from `sciml._catalogue`), loading, overrides, checks.
- `experiment`: `run_experiment`, one validated config into one run directory.
- `operator_run` / `pinn_run`: the operator (data) and PINN experiments.
- `datasets`: the dataset of a `[data]` table, generated, cached and checked.
- `budget`: memory, disk and set-up time a config needs, weighed before anything is allocated.
- `rundir`: run directories, their stored config and what `--resume` may change.
- `sweep`: `sciml sweep`, a grid of runs and its summary.

The library (`sciml.operators`, `sciml.train`, ...) never imports from here.
"""
