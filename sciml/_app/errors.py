"""The error of a config that cannot run, shared by the config checks and what they load."""

import reprlib
from typing import Any


class ConfigError(ValueError):
    """An invalid config: the message is one line naming the key, the value and what is allowed;
    `key` is the dotted config key, where the error is about one."""

    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(message)
        self.key = key


def show_value(value: Any) -> str:
    """`repr(value)` for a one-line message: shortened if long, safe for huge integers and for
    tables or arrays nested too deeply for `repr`."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        return "<an integer too large to print>"
    except RecursionError:  # e.g. `--set model.modes.a.a.a...=1`, thousands of levels deep
        shortened = reprlib.Repr()
        shortened.maxlevel = 3
        text = shortened.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def show_path(path: Any) -> str:
    """A file name for a one-line message: quoted whole, or as `repr` if it holds characters
    that are not printable (a newline, say)."""
    text = str(path)
    return f"'{text}'" if text.isprintable() else repr(text)
