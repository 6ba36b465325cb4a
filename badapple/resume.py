"""What a run finds of earlier runs in its folder, and what of it it may keep.

The chunk files are the record (chunks.py): a frame is solved when a chunk file of this run's
settings holds it, for the target it has now (`changed_targets`); metrics.json and the PNGs
derive from them, and a record of metrics.json is kept only while it still describes its
frame's PNG. Whatever is damaged is reported and recomputed; whatever belongs to another run is
refused, or replaced under --force.
"""

import os
import shutil
import warnings
from pathlib import Path

from badapple.chunks import chunk_info, chunk_number, target_digest
from badapple.errors import DamagedFileError, UserError
from badapple.settings import as_flag, with_defaults
from badapple.storage import FramesDir, png_problem, read_json, read_target_png


def solved_frames(folder: FramesDir, solved_with: dict, force: bool) -> dict[int, Path]:
    """Each frame a chunk file holds with these settings -> the newest such file.

    A damaged chunk file is reported and deleted (its frames are solved again). A file of
    another run (other settings, or an older version's format) cannot be mixed with ours: an
    error, unless --force, which deletes it and the pictures drawn from it.
    """
    held: dict[Path, list[int]] = {}
    others = []
    for path in sorted(folder.embeddings.glob("*.safetensors")):
        info = chunk_info(path)
        if info is None and chunk_number(path) is not None:
            path.unlink()
            warnings.warn(
                f"{path} is damaged; deleted it, its frames are solved again", stacklevel=3
            )
        elif info is None or with_defaults(info.settings) != solved_with:
            others.append((path, with_defaults(info.settings) if info else {}))
        else:
            held[path] = info.frames
    if others and not force:
        path, theirs = others[0]
        name = next((n for n in solved_with if theirs.get(n) != solved_with[n]), "model")
        ours = as_flag(name, solved_with.get(name))
        which = (
            f"a run with {as_flag(name, theirs.get(name))}, not {ours}"
            if theirs and set(solved_with) <= set(theirs)  # else settings it did not have
            else "embeddings from an older optimize.py"
        )
        raise UserError(
            f"{folder.embeddings} holds {which} ({path.name}); rerun with --force to replace "
            "it, or use another --frames-dir"
        )
    if others:
        for path, _ in others:
            path.unlink()
        shutil.rmtree(folder.output, ignore_errors=True)  # its pictures are no longer ours
    newest = {}
    # oldest first, so that a newer file wins; a file not named by us counts as the oldest
    for path in sorted(held, key=lambda path: chunk_number(path) or 0):
        newest.update(dict.fromkeys(held[path], path))
    return newest


def changed_targets(
    folder: FramesDir, held: dict[int, Path], frames: range | list[int], channels: int
) -> list[int]:
    """The frames of `frames` that `held` (frame -> its chunk file) holds, whose target is not
    the one they were solved for (the chunk file's `target_digests`), in order.

    Chunk files written before digests were kept say nothing of their targets: their frames
    are trusted as before, not solved again. Only `frames` are read (the run's wanted ones):
    a frame outside them is checked by the run that wants it.
    """
    kept: dict[Path, dict[int, int] | None] = {}  # chunk file -> its digests, read once
    changed = []
    for frame in frames:
        path = held.get(frame)
        if path is None:
            continue
        if path not in kept:
            info = chunk_info(path)
            kept[path] = info.target_digests if info else None
        digests = kept[path]
        if digests is None:  # an older file: trusted
            continue
        target = read_target_png(folder.target_png(frame), channels)  # [C, T, T]
        if digests.get(frame) != target_digest(target):
            changed.append(frame)
    return changed


def previous_metrics(folder: FramesDir) -> dict:
    """metrics.json of an earlier run, or a fresh one; a damaged one is moved aside (its
    frames are rendered again from their chunk files)."""
    try:
        metrics = read_json(folder.metrics)
    except DamagedFileError as error:
        aside = error.path.with_name(error.path.name + ".damaged")
        os.replace(error.path, aside)
        warnings.warn(
            f"{error.path} is damaged; moved it to {aside.name}, its frames are rendered again",
            stacklevel=3,
        )
        return {"frames": []}
    return metrics or {"frames": []}


def valid_records(
    folder: FramesDir,
    metrics: dict,
    solved_with: dict,
    display: dict,
    held: dict[int, Path],
    size: int,
) -> dict[int, dict]:
    """The records of metrics.json that still describe a solved frame's PNG: same settings and
    display, drawn from the chunk file that holds the frame now, PNG whole. Damaged PNGs are
    reported."""
    if metrics.get("settings") != solved_with or metrics.get("display") != display:
        return {}  # another run's, or drawn another way: every picture is drawn again
    records = {}
    for record in metrics.get("frames", []):
        frame = record.get("frame")
        if frame not in held or record.get("embeddings") != held[frame].name:
            continue
        problem = png_problem(folder.output_png(frame), size)
        if problem is not None:
            if problem != "missing":
                warnings.warn(
                    f"{folder.output_png(frame)} is {problem}; rendering frame {frame} again",
                    stacklevel=3,
                )
            continue
        records[frame] = record
    return records


def drop_unused_chunks(folder: FramesDir, held: dict[int, Path]) -> None:
    """Delete chunk files none of whose frames they are the record of any more (all solved
    again, with --force, into newer files)."""
    used = set(held.values())
    for path in folder.embeddings.glob("chunk_*.safetensors"):
        if path not in used:
            path.unlink()
