"""badapple.resume: what a run keeps of the chunk files it finds; here, their targets."""

import numpy as np
import torch

from badapple.chunks import target_digest, write_chunk
from badapple.resume import changed_targets
from badapple.storage import FramesDir, read_target_png, write_png

SETTINGS = {"model": "gpt2", "render": "sink", "heads": [0]}


def solved_folder(tmp_path, digests: bool) -> tuple[FramesDir, dict]:
    """Four 8x8 gray targets, solved in one chunk file (with their digests, or as a file from
    before digests were kept); returns the folder and `held`, frame -> chunk file."""
    folder = FramesDir(tmp_path / "frames")
    rng = np.random.default_rng(0)
    for frame in range(1, 5):
        write_png(folder.target_png(frame), rng.integers(0, 256, (8, 8), np.uint8))
    frames = [1, 2, 3, 4]
    kept = [target_digest(read_target_png(folder.target_png(f), 1)) for f in frames]
    path = folder.embeddings / "chunk_00001.safetensors"
    write_chunk(path, frames, torch.zeros(4, 9, 8), SETTINGS, 0.1, None, kept if digests else None)
    return folder, dict.fromkeys(frames, path)


def edit(folder: FramesDir, frame: int) -> None:
    """One pixel of a target one gray level brighter: another target."""
    pixels = np.asarray(read_target_png(folder.target_png(frame), 1)[0] * 255).round()
    pixels[3, 2] = (pixels[3, 2] + 1) % 256
    write_png(folder.target_png(frame), pixels.astype(np.uint8))


def test_only_the_frames_whose_targets_changed_are_named(tmp_path):
    folder, held = solved_folder(tmp_path, digests=True)
    assert changed_targets(folder, held, range(1, 5), 1) == []
    edit(folder, 3)
    edit(folder, 1)
    assert changed_targets(folder, held, range(1, 5), 1) == [1, 3]
    assert changed_targets(folder, held, range(2, 4), 1) == [3]  # only the wanted ones
    assert changed_targets(folder, {2: held[2]}, range(1, 5), 1) == []  # only the held ones


def test_a_chunk_file_from_before_digests_is_trusted(tmp_path):
    folder, held = solved_folder(tmp_path, digests=False)
    edit(folder, 3)
    assert changed_targets(folder, held, range(1, 5), 1) == []
