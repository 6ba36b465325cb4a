"""The record of what is solved: one safetensors file per chunk of frames, frames/embeddings/.

    frames        int64 [n]          1-based frame numbers (a chunk's frames need not be
                                     consecutive: see `warm.solve_order`)
    embeddings    float32 [n, T, d]  the inputs_embeds to feed the model (--method adam, or any
                                     method on a deeper --layer, whose inputs are found through
                                     the blocks before it), or the compact exact form of the
                                     reduced solver at layer 0:
    coefficients  float32 [n, T, k]
    basis         float32 [k, d]     inputs_embeds = coefficients @ basis + offset
    offset        float32 [T, d]
    target_digests  int64 [n]        what each frame was solved for: `target_digest` of its
                                     target as optimize.py read it (absent from files written
                                     before digests were kept)

and the JSON metadata "badapple": {"settings": the settings that decide what was solved (the
model and its hub commit, layer, layout, heads, render, contrast, method, solver settings,
tokens), "seconds_per_frame": the time a frame took (solving, and judging its warm start),
"solve_facts": for each frame, how it started and its steps, and at a deeper layer how its
inputs reached it}. At layer 0 the reduced solver's inputs lie row by row in a small affine
subspace (reachable.py: the heads' whitened queries and keys, one null-space direction, minus
wpe), so k = (H+G)·hd + 1 numbers a row hold them exactly (G key heads): 129 instead of 1,600
for one head of GPT-2 XL. A
deeper layer's inputs hold the blocks' updates before it too, which fill every dimension: they
are kept whole (d numbers a row; 1.6 MB a frame for GPT-2 XL at 257 tokens).

These files are the one record of what is solved: the PNGs and metrics.json derive from them, so
a lost PNG or another colormap is re-rendered, not re-solved; a frame whose target changed since
it was solved (another video of the same length downloaded with --force, a PNG edited by hand)
is solved again. `target_digest` is the first 8 bytes of the SHA-256 of a target frame's float32
[C, T, T] pixels, as a signed little-endian int64. Files are named chunk_00001... in the order
written; a frame held by several (some frames solved again with --force) is the newest file's.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from badapple.errors import UserError, caused_by_interrupt
from badapple.reachable import Factored
from badapple.storage import write_atomic

METADATA_KEY = "badapple"
_NAME = re.compile(r"^chunk_(\d{5,})\.safetensors$")


@dataclass(frozen=True)
class ChunkInfo:
    """What a chunk file says of itself, read without its embeddings."""

    frames: list[int]
    settings: dict
    seconds_per_frame: float
    solve_facts: dict[int, dict]  # frame -> how it was solved: {"start": ..., "steps": ...}
    # frame -> `target_digest` of the target it was solved for; None: a file written before
    # digests were kept
    target_digests: dict[int, int] | None = None


def target_digest(target: np.ndarray) -> int:
    """A short hash of one target frame as optimize.py reads it (float32 [C, T, T] in [0, 1]):
    the first 8 bytes of its SHA-256, as a signed int64, to keep in a chunk file."""
    data = np.ascontiguousarray(target, dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little", signed=True)


def chunk_number(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def next_chunk_path(folder: Path) -> Path:
    """A name after every chunk file in `folder`: chunk_00001.safetensors, chunk_00002..."""
    numbers = [chunk_number(path) for path in folder.glob("chunk_*.safetensors")]
    last = max([number for number in numbers if number is not None], default=0)
    return folder / f"chunk_{last + 1:05d}.safetensors"


def write_chunk(
    path: Path,
    frames: list[int],
    embeddings: torch.Tensor | Factored,
    settings: dict,
    seconds_per_frame: float,
    solve_facts: list[dict] | None = None,
    target_digests: list[int] | None = None,
) -> None:
    """Save one chunk: `embeddings` [n, T, d] as they are, or `Factored` in its compact form;
    `solve_facts`, one a frame, say how each was solved (kept with it, so that a picture drawn
    again from this file still says so); `target_digests`, one a frame, what it was solved for
    (`target_digest`)."""
    tensors = {"frames": torch.tensor(frames, dtype=torch.int64)}
    if target_digests is not None:
        tensors["target_digests"] = torch.tensor(target_digests, dtype=torch.int64)  # [n]
    if isinstance(embeddings, Factored):
        tensors["coefficients"] = embeddings.coefficients
        tensors["basis"] = embeddings.basis
        tensors["offset"] = embeddings.offset
    else:
        tensors["embeddings"] = embeddings
    tensors = {name: t.float().contiguous().cpu() if t.is_floating_point() else t.contiguous()
               for name, t in tensors.items()}  # fmt: skip
    record = {
        "settings": settings,
        "seconds_per_frame": seconds_per_frame,
        "solve_facts": solve_facts or [{} for _ in frames],
    }
    # Serialised here and written by Python, so a full disk raises OSError(ENOSPC) like every
    # other write (safetensors' own save_file reports I/O errors as its own exception type).
    data = save(tensors, metadata={METADATA_KEY: json.dumps(record)})
    write_atomic(path, lambda temporary: temporary.write_bytes(data))


def chunk_info(path: Path) -> ChunkInfo | None:
    """A chunk file's frames, settings and time; None when it is missing, damaged or not ours.

    Reads the header and the `frames` and `target_digests` tensors only. safetensors checks that
    the header's offsets cover the file exactly, so a truncated file is caught without reading
    the embeddings.
    """
    try:
        with safe_open(str(path), framework="pt") as chunk:
            frames = chunk.get_tensor("frames")
            names = set(chunk.keys())
            digests = None  # a file from before digests were kept has none: it is trusted
            if "target_digests" in names:
                digests = chunk.get_tensor("target_digests")
                names.remove("target_digests")
            if names == {"frames", "embeddings"}:
                rows = chunk.get_slice("embeddings").get_shape()[0]
            elif names == {"frames", "coefficients", "basis", "offset"}:
                rows = chunk.get_slice("coefficients").get_shape()[0]
            else:
                return None
            record = json.loads((chunk.metadata() or {})[METADATA_KEY])
    except FileNotFoundError:
        return None
    except PermissionError as error:  # whole, maybe: never taken for damage and deleted
        raise UserError(f"cannot read {path} ({error.strerror}); check its permissions") from None
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError) as error:
        if caused_by_interrupt(error):  # a Ctrl-C, not damage: the chunk must not be deleted
            raise
        return None
    if frames.ndim != 1 or len(frames) != rows or not isinstance(record, dict):
        return None
    if digests is not None and (digests.shape != frames.shape or digests.dtype != torch.int64):
        return None
    facts = record.get("solve_facts")
    facts = facts if isinstance(facts, list) and len(facts) == rows else [{}] * rows
    return ChunkInfo(
        frames=frames.tolist(),
        settings=record.get("settings", {}),
        seconds_per_frame=float(record.get("seconds_per_frame", 0.0)),
        solve_facts=dict(zip(frames.tolist(), facts, strict=True)),
        target_digests=None
        if digests is None
        else dict(zip(frames.tolist(), digests.tolist(), strict=True)),
    )


def read_inputs_embeds(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The one reader of chunk files: (frames int64 [n], inputs_embeds float32 [n, T, d]),
    whichever form the file holds."""
    with safe_open(str(path), framework="pt") as chunk:
        frames = chunk.get_tensor("frames")
        if "embeddings" in chunk.keys():
            return frames, chunk.get_tensor("embeddings")
        factored = Factored(*(chunk.get_tensor(n) for n in ("coefficients", "basis", "offset")))
    return frames, factored.inputs_embeds()


def saved_inputs_embeds(
    held: dict[int, Path], frames: list[int]
) -> Iterator[tuple[Path, list[int], torch.Tensor]]:
    """The saved inputs_embeds of `frames`, each chunk file read once: (file, its frames among
    `frames`, their embeddings [k, T, d]), file after file. `held` maps a frame to its file."""
    by_file: dict[Path, list[int]] = {}
    for frame in frames:
        by_file.setdefault(held[frame], []).append(frame)
    for path, wanted in by_file.items():
        saved_frames, embeddings = read_inputs_embeds(path)  # [n, T, d]
        row_of = {int(saved): row for row, saved in enumerate(saved_frames)}
        yield path, wanted, embeddings[[row_of[frame] for frame in wanted]]
