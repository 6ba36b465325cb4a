"""Running the four scripts as a user does (subprocesses), and checking what they print."""

import io
import os
import runpy
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE, FPS, SECONDS = 32, 10, 2.0  # 20 frames of 32x32: small enough for a tiny GPT-2 (64 positions)
# One optimize.py setting for every run that is compared with another: 5 chunks of 4 frames,
# each long enough (~0.3 s) that a run can be stopped between two of them.
RUN = ["--steps", "200", "--chunk-size", "4", "--device", "cpu"]
FAST = ["--steps", "4", "--chunk-size", "8", "--device", "cpu"]  # where only the files matter
# No test may reach the network. One thread: the tensors are tiny and the test machines have
# few cores, where torch's threads only wait on each other (10x slower here with two).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def command(script: str, *args) -> list[str]:
    return [sys.executable, str(REPO / script), *map(str, args)]


def run(script: str, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(script, *args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def run_here(script: str, *args) -> subprocess.CompletedProcess:
    """The script's main() in this process, as `run` would run it in another, for its quick
    refusals: a second interpreter spends 2 s importing torch before it says one line.
    A SystemExit's message goes to stderr, as the interpreter would print it."""
    argv, sys.argv = sys.argv, [script, *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=stderr)
        returncode = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(
        [script, *args], returncode, stdout.getvalue(), stderr.getvalue()
    )


def start(script: str, *args) -> subprocess.Popen:
    """The script running in the background, its stdout and stderr captured."""
    return subprocess.Popen(
        command(script, *args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-2000:]


def assert_user_error(result: subprocess.CompletedProcess, pattern: str) -> str:
    """Exit code != 0, no traceback, one error line matching `pattern`; returns that line."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert pattern in error_lines[0], error_lines[0]
    return error_lines[0]


def warning_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning:" in line]
