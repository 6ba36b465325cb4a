"""Errors meant for people, and the one place the scripts turn them into exit codes.

A `UserError` carries one line that names the problem and the fix. The scripts run their
library function inside `exit_on_error`, which prints that line (no traceback) and exits
non-zero; Ctrl-C exits 130 after whatever the library already saved.
"""

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A failure the user can fix: the message says what went wrong and what to do."""


@contextmanager
def exit_on_error(script: str) -> Iterator[None]:
    """Turn the expected failures of a script into one line on stderr and an exit code."""
    try:
        yield
    except UserError as error:
        sys.exit(f"{script}: error: {error}")
    except KeyboardInterrupt:
        print(
            f"\n{script}: interrupted; finished work is saved, run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            sys.exit(
                f"{script}: error: the disk is full ({error.filename or 'while writing'}); "
                "free some space and run the same command again to resume"
            )
        if error.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            sys.exit(
                f"{script}: error: cannot write {error.filename}: {error.strerror}; "
                "pick a writable location"
            )
        raise
