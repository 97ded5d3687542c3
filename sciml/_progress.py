"""Progress bars that stay readable in logs."""

import sys

from tqdm.auto import tqdm


def progress_bar(*, disable: bool, **kwargs) -> tqdm:
    """A tqdm bar that refreshes often on a terminal and rarely when written to a log file
    (where every refresh is another line of carriage returns)."""
    interactive = sys.stderr.isatty()
    return tqdm(disable=disable, mininterval=0.1 if interactive else 30.0, **kwargs)
