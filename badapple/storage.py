"""The shared `frames/` folder: where each stage's files live, and how they are written and read.

    frames/
      meta.json                      source, fps, size, fit, frame count      (download.py)
      audio.m4a                      the soundtrack, when the video has one    (download.py)
      targets/frame_00001.png ...    8-bit gray (RGB with --color), size x size, 1-based
                                                                               (download.py)
      output/frame_00001.png ...     RGB attention maps: the colormap's, or    (optimize.py)
                                     each channel its head's in colour
      output/metrics.json            run settings and per-frame figures        (optimize.py)
      embeddings/chunk_00001.safetensors
                                     what is solved, and how (chunks.py)      (optimize.py)
      .lock                          PID and name of the script working here:
                                     one at a time           (download.py, optimize.py)

Every file is written under a temporary name and renamed into place, so a crash never leaves a
half-written file that a later run would trust; and what a rerun finds is checked before it is
trusted (`png_problem`, `chunks.chunk_info`), since a disk or a user can still damage it.
"""

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from badapple.errors import DamagedFileError, UserError

FRAME_PATTERN = "frame_%05d.png"  # the original's numbering, also ffmpeg's sequence pattern
_FRAME_RE = re.compile(r"^frame_(\d{5,})\.png$")


@dataclass(frozen=True)
class FramesDir:
    """Paths inside one frames folder."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    @property
    def audio(self) -> Path:
        return self.root / "audio.m4a"

    @property
    def targets(self) -> Path:
        return self.root / "targets"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def metrics(self) -> Path:
        return self.output / "metrics.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def target_png(self, frame: int) -> Path:
        return self.targets / (FRAME_PATTERN % frame)

    def output_png(self, frame: int) -> Path:
        return self.output / (FRAME_PATTERN % frame)


def frame_numbers(folder: Path) -> list[int]:
    """The 1-based frame numbers of the `frame_NNNNN.png` files in a folder, sorted."""
    if not folder.is_dir():
        return []
    found = (_FRAME_RE.match(name) for name in os.listdir(folder))
    return sorted(int(match.group(1)) for match in found if match)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then rename the result onto `path`.

    A failure (a full disk, a crash, Ctrl-C) leaves `path` as it was: the old file or none,
    never half of one. An OSError names `path`, the file the user asked for.
    """
    temporary = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        # write() on a full disk names no file; mkdir names the folder, rename the temporary
        about_us = error.filename is None or Path(error.filename) in (
            temporary,
            path,
            *path.parents,
        )
        if error.errno is None or not about_us:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        if temporary.parent.is_dir():
            temporary.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    write_atomic(path, lambda temporary: temporary.write_text(text))


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when the file does not exist."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(
            f"{path} is damaged ({error}); delete it and rerun the script that wrote it", path
        ) from None


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 pixels, [H, W] gray or [H, W, 3] RGB, as a PNG."""
    image = Image.fromarray(pixels)
    write_atomic(path, lambda temporary: image.save(temporary, format="PNG"))


def read_gray_png(path: Path) -> np.ndarray:
    """A PNG as float32 gray values in [0, 1], [H, W]."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; rerun download.py") from None
    except OSError as error:
        raise UserError(
            f"{path} is not a readable PNG ({error}); rerun download.py --force"
        ) from None
    return pixels / 255.0


def read_target_png(path: Path, channels: int) -> np.ndarray:
    """A target frame as float32 in [0, 1], channel first: [1, H, W] gray or [3, H, W] RGB."""
    if channels == 1:
        return read_gray_png(path)[None]
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    except OSError as error:
        raise UserError(
            f"{path} is not a readable PNG ({error}); rerun download.py --force"
        ) from None
    return pixels.transpose(2, 0, 1) / 255.0


def read_targets(folder: FramesDir, frames: list[int], channels: int) -> np.ndarray:
    """Target frames as optimize.py reads them: [B, C, T, T] float32 in [0, 1]."""
    return np.stack([read_target_png(folder.target_png(frame), channels) for frame in frames])


def png_problem(path: Path, size: int | None = None) -> str | None:
    """What is wrong with a PNG we wrote: "missing", "damaged (...)", "16x16, not 32x32";
    None when it decodes whole (and is size x size, when `size` is given)."""
    try:
        with Image.open(path) as image:
            shape = image.size
            # Checks every chunk's CRC up to IEND: catches a truncated file, and the flipped or
            # zeroed bytes that decoding alone can let through as wrong pixels.
            image.verify()
    except FileNotFoundError:
        return "missing"
    except UnidentifiedImageError:
        return "damaged (not an image)"
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "broken PNG"
        return f"damaged ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    if size is not None and shape != (size, size):
        return f"{shape[0]}x{shape[1]}, not {size}x{size}"
    return None


def read_rgb_png(path: Path) -> np.ndarray:
    """A PNG as uint8 RGB, [H, W, 3]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@contextmanager
def frames_lock(root: Path, script: str = "optimize.py") -> Iterator[None]:
    """Hold `root/.lock` for `script` (download.py, optimize.py) for the length of the block;
    raise UserError if another process does.

    flock(2) belongs to the open file, so the kernel drops it when its process dies, however it
    dies: a crashed or killed run never leaves the folder locked. The file keeps the holder's
    PID and script for the message ("PID SCRIPT"; a file of an older version holds the PID of
    an optimize.py alone), and is left in place (deleting it would race with a starting run).
    """
    import fcntl

    path = root / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, holder = handle.read().strip().partition(" ")
            raise UserError(
                f"another {holder or 'optimize.py'} (pid {pid or 'unknown'}) is running on "
                f"{root}; wait for it or use another --frames-dir"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()} {script}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
