"""Errors meant for people, and the one place the scripts turn them into exit codes.

A `UserError` carries one line that names the problem and the fix. The scripts run their
library function inside `exit_on_error`, which prints that line (no traceback) and exits
non-zero; Ctrl-C or SIGTERM exits 130 after whatever the library already saved.
"""

import errno
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

INTERRUPTED_EXIT_CODE = 130  # what shells report for a command stopped by Ctrl-C (128 + SIGINT)
# Errors that mean "this place cannot be written": a read-only or foreign folder, a file where a
# folder should be (ENOTDIR; EEXIST from mkdir), a folder where a file should be (EISDIR).
_UNWRITABLE = (
    errno.EACCES,
    errno.EROFS,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EISDIR,
    errno.ENAMETOOLONG,
)


class UserError(Exception):
    """A failure the user can fix: the message says what went wrong and what to do."""


def first_line(error: Exception) -> str:
    """An error's own message cut to its first line, to quote inside one of ours."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class DamagedFileError(UserError):
    """A file of ours exists but cannot be read back (truncated, corrupt); `path` names it."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@contextmanager
def exit_on_error(script: str, resume: str = "run the same command to resume") -> Iterator[None]:
    """Turn the expected failures of a script into one line on stderr and an exit code.

    Inside it, SIGTERM raises KeyboardInterrupt, so `kill` stops a run as cleanly as Ctrl-C
    (progress bars close, finished files stay), and warnings print as one `script: warning:`
    line.
    """
    previous_format = warnings.formatwarning
    warnings.formatwarning = lambda message, *_: f"{script}: warning: {message}\n"
    previous_handler = None
    if threading.current_thread() is threading.main_thread():  # signals go to the main thread
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    except UserError as error:
        sys.exit(f"{script}: error: {error}")
    except KeyboardInterrupt:
        _exit_interrupted(script, resume)
    except OSError as error:
        if caused_by_interrupt(error):
            _exit_interrupted(script, resume)
        if error.errno == errno.ENOSPC:
            sys.exit(
                f"{script}: error: the disk is full ({error.filename or 'while writing'}); "
                "free some space and run the same command again to resume"
            )
        if error.errno in _UNWRITABLE and error.filename is not None:
            sys.exit(f"{script}: error: {_unwritable(error)}; pick a writable location")
        raise
    except Exception as error:
        if caused_by_interrupt(error):
            _exit_interrupted(script, resume)
        raise
    finally:
        warnings.formatwarning = previous_format
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _raise_keyboard_interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether a Ctrl-C or SIGTERM lies behind `error`.

    The signal raises KeyboardInterrupt in whatever line runs when it comes, and some lines
    wrap it: Python 3.11 turns one raised while a class is being made (PIL defines its image
    plugins lazily, on the first save) into a RuntimeError whose cause is the interrupt.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _exit_interrupted(script: str, resume: str) -> NoReturn:
    print(f"\n{script}: interrupted; finished work is saved, {resume}", file=sys.stderr)
    sys.exit(INTERRUPTED_EXIT_CODE)


def _unwritable(error: OSError) -> str:
    """Why `error.filename` cannot be written, naming the file that blocks it where one does."""
    path = Path(error.filename)
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        # Some folder on the way is a file: name it, it is what the user has to move.
        for ancestor in (path, *path.parents):
            if ancestor.exists() and not ancestor.is_dir():
                return f"cannot write {path}: {ancestor} is a file, not a folder"
    if error.errno == errno.EISDIR:
        return f"cannot write {path}: it is a folder, not a file"
    return f"cannot write {path}: {error.strerror}"
