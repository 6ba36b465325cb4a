import os
import signal
import time

import pytest

from badapple.errors import exit_on_error

INTERRUPTED = "optimize.py: interrupted; finished work is saved, run the same command to resume"


def test_sigterm_stops_like_ctrl_c(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, exit_on_error("optimize.py"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the latest here
    assert stopped.value.code == 130
    assert INTERRUPTED in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # put back


class InterruptedWhileNamed:
    """A descriptor whose __set_name__ meets the Ctrl-C, as PIL's lazily made image plugins
    did in CI: the signal came while `class GifImageFile` was being made."""

    def __set_name__(self, owner, name):
        raise KeyboardInterrupt


def test_an_interrupt_that_python_wraps_in_another_error_still_stops_like_ctrl_c(capsys):
    with pytest.raises(SystemExit) as stopped, exit_on_error("optimize.py"):
        type("LazyPlugin", (), {"is_animated": InterruptedWhileNamed()})
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip() == INTERRUPTED


def test_an_error_with_no_interrupt_behind_it_is_not_taken_for_one():
    with pytest.raises(RuntimeError, match="a bug"), exit_on_error("optimize.py"):
        raise RuntimeError("a bug")
