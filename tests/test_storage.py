"""badapple.storage and badapple.errors: atomic writes, damage checks, the lock, exit codes."""

import errno
import fcntl
import os
from pathlib import Path

import numpy as np
import pytest

from badapple.errors import UserError, exit_on_error
from badapple.storage import frames_lock, png_problem, write_atomic, write_png


def test_a_failed_write_leaves_the_old_file_and_names_the_path(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def fill_the_disk(temporary: Path) -> None:
        temporary.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")  # write() names no file

    with pytest.raises(OSError) as error:
        write_atomic(path, fill_the_disk)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no .part left


def test_png_problem_tells_missing_damaged_and_wrong_size(tmp_path):
    path = tmp_path / "frame.png"
    assert png_problem(path) == "missing"
    write_png(path, np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
    assert png_problem(path) is None and png_problem(path, 8) is None
    assert png_problem(path, 16) == "8x8, not 16x16"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte in the pixel data: decodes, but its CRC is wrong
    path.write_bytes(data)
    assert png_problem(path).startswith("damaged")
    path.write_bytes(bytes(data[:40]))
    assert png_problem(path).startswith("damaged")
    path.write_text("not a picture")
    assert png_problem(path) == "damaged (not an image)"


def test_the_lock_refuses_a_second_holder_but_not_a_dead_one(tmp_path):
    (tmp_path / ".lock").write_text("999999\n")  # left by a process that died: not held
    with frames_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()} optimize.py\n"
        with pytest.raises(UserError, match=f"another optimize.py \\(pid {os.getpid()}\\)"):
            with frames_lock(tmp_path):
                pass
    with frames_lock(tmp_path):  # released at the end of the block
        pass


def test_the_refusal_names_the_script_that_holds_the_lock(tmp_path):
    with frames_lock(tmp_path, "download.py"):
        with pytest.raises(UserError, match=f"another download.py \\(pid {os.getpid()}\\)"):
            with frames_lock(tmp_path):
                pass
    (tmp_path / ".lock").write_text("4242\n")  # an older version's file names no script
    with open(tmp_path / ".lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held as an older optimize.py does
        with pytest.raises(UserError, match="another optimize.py \\(pid 4242\\)"):
            with frames_lock(tmp_path, "download.py"):
                pass


def inside_a_file(folder: Path) -> Path:
    (folder / "notes.txt").write_text("a file where a folder should be")
    return folder / "notes.txt" / "frames" / "meta.json"


def onto_a_folder(folder: Path) -> Path:
    (folder / "video.mp4").mkdir()
    return folder / "video.mp4"


@pytest.mark.parametrize(
    ("make", "expected"),
    [(inside_a_file, "notes.txt is a file, not a folder"), (onto_a_folder, "it is a folder")],
)
def test_an_unwritable_path_is_one_line_naming_it(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(SystemExit) as stopped, exit_on_error("assemble.py"):
        write_atomic(path, lambda temporary: temporary.write_text("x"))
    message = str(stopped.value.code)
    assert message.startswith(f"assemble.py: error: cannot write {path}: ")
    assert expected in message and message.endswith("; pick a writable location")
    assert "\n" not in message
