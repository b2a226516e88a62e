"""Errors that are the user's input, not a bug in LARA.

The `lara` commands end such an error on one line (`lara train: error: ...`) with exit status 2; any other
exception is a bug and keeps its traceback: `run_command` does that for `lara <command>` and every `python -m`
entry point alike, with `--debug` (or LARA_DEBUG=1) showing the traceback. A full disk and a name longer than the
filesystem allows are the machine's state or the user's path, not bugs: one line too. `InputError` is also a ValueError and
`MissingPath` a FileNotFoundError, so code that catches the builtin types keeps working. Pure Python: the light
parts (the HDF5 writer and the ROS node under the system interpreter) import it without torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_FLAG, DEBUG_ENV = "--debug", "LARA_DEBUG"


class UserError(Exception):
    """Bad input from the person running a command: a config, a flag, a path or a data file."""


class InputError(UserError, ValueError):
    """A value the user gave is wrong: a config key or value, a command-line flag, a task name, a data file."""


class MissingPath(UserError, FileNotFoundError):
    """A path the user gave does not exist or lacks the files it must hold."""


class TrainingDiverged(UserError):
    """A loss component, the gradient norm or a weight became NaN or infinite: training stopped before writing a
    checkpoint or a final model from it. Its cause is the config or the data (a learning rate or loss weight too
    large, statistics or data that normalise actions to extremes), so it ends on one line like other user errors."""


def run_command(prog: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """`main(argv)` with user errors ending on one line: what `lara <command>` and `python -m` entry points share."""
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(main([a for a in argv if a != DEBUG_FLAG]) or 0)
    except UserError as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, or a name too long, wherever the write was: the user's to fix
        found = _filesystem_error(error)
        if found is None or debug:
            raise
        print(f"{prog}: error: {found}", file=sys.stderr)
        return 2


def _filesystem_error(error: OSError) -> str | None:
    """The one line of an OSError that is the machine's state or the user's path, not a bug: no space left on the
    device (or quota), or a file name longer than the filesystem allows; None for any other."""
    import errno

    from lara.outputs import NO_SPACE, disk_full  # pure Python too; lara.outputs imports this module

    if error.errno in NO_SPACE:
        return str(disk_full(error, None))
    if error.errno == errno.ENAMETOOLONG:
        named = f"{error.filename}: " if error.filename else ""
        return f"{named}a name is longer than the filesystem allows (255 bytes on most); give a shorter name"
    return None
