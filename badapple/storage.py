"""The shared `frames/` folder: where each stage's files live, and how they are written and read.

    frames/
      meta.json                      source, fps, size, fit, frame count      (download.py)
      audio.m4a                      the soundtrack, when the video has one    (download.py)
      targets/frame_00001.png ...    8-bit gray, size x size, 1-based          (download.py)
      output/frame_00001.png ...     RGB attention maps, magma                 (optimize.py)
      output/metrics.json            run settings and per-frame figures        (optimize.py)
      embeddings/frames_00001-00064.safetensors
                                     `frames` int64 [n], `embeddings` float32 [n, size, d]

Every file is written under a temporary name and renamed into place, so a crash never leaves a
half-written file that a later run would trust.
"""

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from badapple.errors import UserError

if TYPE_CHECKING:
    import torch

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
    """Call `write(temporary_path)`, then rename the result onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
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
        raise UserError(f"{path} is damaged ({error}); delete it or rerun with --force") from None


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


def read_rgb_png(path: Path) -> np.ndarray:
    """A PNG as uint8 RGB, [H, W, 3]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# torch is imported where embeddings are handled, not above: plot.py reads this module and
# would otherwise wait seconds for a torch import it never uses.


def write_embeddings(
    path: Path, frames: "torch.Tensor", embeddings: "torch.Tensor", metadata: dict[str, str]
) -> None:
    """Save one chunk: `frames` int64 [n] (1-based) and `embeddings` float32 [n, T, d]."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        "frames": frames.to(torch.int64).contiguous().cpu(),
        "embeddings": embeddings.to(torch.float32).contiguous().cpu(),
    }
    write_atomic(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def read_embeddings(path: Path) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Load one chunk: (frames int64 [n], embeddings float32 [n, T, d])."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as chunk:
        return chunk.get_tensor("frames"), chunk.get_tensor("embeddings")
