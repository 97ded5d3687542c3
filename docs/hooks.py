"""MkDocs hooks: pages that are generated from the code at build time, so they never go stale.

A page asks for generated content with an HTML comment on a line of its own:

- `<!-- sciml:config-keys SCHEMA -->` (or `PINN_SCHEMA`): a table of every key of that schema
  in `sciml/_app/config.py`, with its type, default, allowed values and description.
- `<!-- sciml:cli-help run -->` (or `data`, `eval`): the `--help` text of that subcommand of
  the `sciml` command line.
"""

import contextlib
import html
import os
import re
from typing import Any

import tomli_w

_PLACEHOLDER = re.compile(r"^<!-- sciml:(config-keys|cli-help) (\w+) -->$", re.MULTILINE)
_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "list"}
# Characters that Markdown would read as markup inside a table cell; `<`, `>` and `&` become
# HTML entities instead (a backslash does not escape `<` in Python-Markdown).
_MARKUP = re.compile(r"([\\`*_\[\]|])")


def _escape(text: str) -> str:
    return html.escape(_MARKUP.sub(r"\\\1", text), quote=False)


def _code(text: str) -> str:
    return "`" + text + "`"  # a `|` inside a code span does not split a table cell


def _toml(value: Any) -> str:
    try:
        return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")
    except TypeError:  # no TOML form (e.g. None)
        return repr(value)


def _type(option: Any) -> str:
    types = option.type if isinstance(option.type, tuple) else (option.type,)
    names = []
    for t in types:
        name = _TYPE_NAMES.get(t, t.__name__)
        if t is list and option.item_type is not None:
            name = f"list of {_TYPE_NAMES.get(option.item_type, option.item_type.__name__)}"
        names.append(name)
    return " or ".join(names)


def _allowed(option: Any) -> str:
    if option.choices is not None:
        return ", ".join(_code(_toml(c)) for c in option.choices)
    return _escape(option.allowed) if option.allowed else ""


def _rows(schema: dict, required: object, prefix: str = ""):
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from _rows(spec, required, f"{prefix}{key}.")
            continue
        default = "required" if spec.default is required else _code(_toml(spec.default))
        yield (_code(prefix + key), _type(spec), default, _allowed(spec), _escape(spec.help))


def config_table(name: str) -> str:
    from sciml._app import config as _config

    schema = getattr(_config, name, None)
    if not isinstance(schema, dict):
        raise ValueError(f"docs: `sciml._app.config.{name}` is not a config schema.")
    lines = [
        "| key | type | default | allowed | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(schema, _config._REQUIRED)]
    return "\n".join(lines)


def cli_help(command: str) -> str:
    import argparse

    from sciml._app import cli as _cli

    parser = _cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command not in subparsers.choices:
        raise ValueError(f"docs: `sciml {command}` is not a subcommand of the sciml CLI.")
    # argparse wraps to the terminal width; fix it so that the page does not depend on it.
    with _environ(COLUMNS="96"):
        text = subparsers.choices[command].format_help()
    return "```text\n" + text.rstrip() + "\n```"


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def fill(match: re.Match) -> str:
        kind, name = match.groups()
        return config_table(name) if kind == "config-keys" else cli_help(name)

    return _PLACEHOLDER.sub(fill, markdown)
