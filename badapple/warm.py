"""Warm starts: which frames start from their predecessor's solution, and how; the one policy.

A video's neighbouring frames are nearly the same picture, so a frame can start from its
predecessor's solution and polish it instead of solving from random starts. But a polish stays
near where it starts: after a hard cut (white figures on black to black figures on white) the
old solution holds on, and if its successors start from it in turn, the new scene comes out
banded for dozens of frames. So, for each batch:

1. `solve_order` batches the frames so that every frame's predecessor was solved in the batch
   before: batch k holds the k-th frame of up to `chunk_size` runs of consecutive frames.
2. A frame starts warm only if its target is of its predecessor's scene (`scene_correlation`
   at least `cut_correlation`); a new scene, or a frame with no solved predecessor, starts
   cold.
3. A warm frame whose picture ends up more than `fall_behind_mae` worse than its predecessor's,
   or worse than `check_above_mae` at all, fell behind: it is solved cold as well, and the
   better picture is kept. In a scene the display cannot show well (its chain's last cold solve
   ended above UNREACHABLE times that level: a weak display's, atlas.py) the level is what that
   cold solve reached, plus the margin: every cold solve of it would miss the check's level
   too, and solving each warm frame twice gave a picture no better. So a warm frame ends within
   the margin of its predecessor's picture and under the check's level (or its scene's cold
   solve), or no worse than its own cold solve, whatever step 2 missed.

Measured on the full-video benchmark (benchmarks/full_video.py, README "Warm starts").
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from badapple.solvers import Solution, SolverSettings, concatenate, in_order

FLAT_SPREAD = 1e-6  # a frame whose pixels vary less than this (variance) is flat
# A scene whose cold solve ended above this many times the check's level is one the display
# cannot show well (a weak display's, atlas.py): its warm frames are judged against that cold
# solve, not against the level, which every cold solve of it would miss as well.
UNREACHABLE = 2


@dataclass(frozen=True)
class WarmStarts:
    # Most steps of a frame started from its predecessor, in the cold schedule's cycles (50,
    # 100, 200, 400): a frame that still improves gets them all. From a predecessor shown worse
    # than `check_above_mae`, in a scene the display does not show well, fewer, in cycles of 50
    # (each a chance to stop): a long polish there gains little picture for its steps, and a
    # cycle of 150 kept a few frames of each batch stepping alone (the default display of
    # SmolLM2 took 25% longer for 2% more steps).
    steps: int = 750
    steps_after_a_miss: int = 200
    # Their peak rate: enough to move with a dance, not to leave a scene, and low enough not to
    # throw a sharp solution away on the first steps (at 0.02 a fading scene's frames rose
    # from their predecessor's solution and stopped there, at mae 0.08 instead of 0.009).
    lr: float = 0.01
    cut_correlation: float = 0.1  # a predecessor less correlated than this: a cut, cold
    fall_behind_mae: float = 0.005  # a warm picture this much worse than its predecessor's
    # or this bad, whatever its predecessor: solved cold as well. None: no such check (a z-score
    # picture's mae, ~0.2, says nothing absolute)
    check_above_mae: float | None = 0.02


# Per method: the original's starts every frame at random.
METHOD_WARM_STARTS: dict[str, WarmStarts | None] = {"reduced": WarmStarts(), "adam": None}


@dataclass(frozen=True)
class Predecessor:
    """What a frame's warm start needs of the frame before it."""

    embeddings: torch.Tensor  # [T', d] its solution
    picture: torch.Tensor  # [C, T, T] its target, in [0, 1]
    mae: float | None  # its picture's mae against that target; None: not known
    # the mae of its chain's last cold solve (itself, if it was solved cold): what the display
    # reached in this scene from random starts; None: not known
    cold_mae: float | None = None


def scene_cold_mae(record: dict, predecessor: Predecessor | None) -> float | None:
    """A solved frame's `Predecessor.cold_mae`, from its record ("start", "mae") and the
    predecessor it started from: its own mae if it was solved cold, else its chain's."""
    if record.get("start") != "warm":
        return record["mae"] if record.get("start") else None  # no start recorded: unknown
    return predecessor.cold_mae if predecessor is not None else None


def solve_order(todo: list[int], chunk_size: int, *, warm: bool) -> list[list[int]]:
    """The frames to solve together, batch after batch.

    Without warm starts: consecutive chunks of `todo`. With them, `todo` is cut into runs of
    ceil(len / chunk_size) consecutive frames (so at most `chunk_size` runs: 100 frames in
    chunks of 64 make 50 runs of 2) and batch k holds the k-th frame of every run:
    frames from distant parts of the video, each following its own predecessor, which the
    batch before solved.
    """
    if not warm:
        return [todo[first : first + chunk_size] for first in range(0, len(todo), chunk_size)]
    run_length = -(-len(todo) // chunk_size) if todo else 0  # ceil
    runs = [todo[first : first + run_length] for first in range(0, len(todo), run_length or 1)]
    return [[run[k] for run in runs if k < len(run)] for k in range(run_length)]


def scene_correlation(pictures: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """How much of one scene two frames are: [B, C, T, T] each -> [B], the Pearson correlation
    of their pixels. A dance move or a fade keeps it high (a fade is the same picture, scaled),
    a hard cut drops it to about 0, or below (white figures on black to black on white).
    Where either frame is flat (all black, say), it is 1 - |change of mean level|.

    Measured on the dance video of fixtures/clips.py: 0.18 and more for 99% of consecutive
    frames of one scene, 0.06 and less across every hard cut.
    """
    # in float64 on the CPU: an Apple GPU has none, and the frames are few
    shown, before = (frames.flatten(1).cpu().double() for frames in (pictures, previous))
    shown_centred = shown - shown.mean(dim=1, keepdim=True)
    before_centred = before - before.mean(dim=1, keepdim=True)
    spread = (shown_centred.square().sum(1) * before_centred.square().sum(1)).sqrt()
    flat = spread <= FLAT_SPREAD * shown.shape[1]
    correlation = (shown_centred * before_centred).sum(1) / spread.clamp(min=1e-30)
    level = 1 - (shown.mean(1) - before.mean(1)).abs()
    return torch.where(flat, level, correlation).float()  # [B], on the CPU


def _fell_behind(mae: float, predecessor: Predecessor, warm: WarmStarts) -> bool:
    """Whether a warm frame's picture (its mae) may be worse than a cold solve's: worse than
    its predecessor's by the margin (a cut step 2 missed), or bad outright (a cross-fade drifts
    by less than the margin a frame, and its predecessor was no better): over the check's level,
    or in a scene the display cannot show, over what it reached there cold."""
    if mae > (predecessor.mae or 0.0) + warm.fall_behind_mae:
        return True
    if warm.check_above_mae is None:
        return False
    scene = predecessor.cold_mae or 0.0
    if scene <= UNREACHABLE * warm.check_above_mae:  # a scene the display shows: the level
        return mae > warm.check_above_mae
    return mae > scene + warm.fall_behind_mae  # one it cannot: what it reached there cold


def warm_settings(settings: SolverSettings, warm: WarmStarts, steps: int) -> SolverSettings:
    """The solver settings of a warm frame: one start, at most `steps` at `warm.lr`, in the
    cycles of `settings` for a long polish, of equal length for a short one (at most
    `warm.steps_after_a_miss`)."""
    lr_min = min(settings.lr_min, warm.lr)  # a --lr-min above the polish's peak: flat at it
    growth = settings.cycle_growth if steps > warm.steps_after_a_miss else 1
    return replace(settings, steps=steps, lr=warm.lr, lr_min=lr_min, seeds=1, cycle_growth=growth)


def polish_steps(predecessor: Predecessor, warm: WarmStarts) -> int:
    """Most steps of a frame started warm from `predecessor`: `warm.steps`, or
    `warm.steps_after_a_miss` where its picture missed the check's level."""
    missed = warm.check_above_mae is not None and (predecessor.mae or 0.0) > warm.check_above_mae
    return warm.steps_after_a_miss if missed else warm.steps


# frames, their starts, most steps of a warm start -> Solution
Solve = Callable[[list[int], dict[int, torch.Tensor], int], Solution]
Judge = Callable[[list[int], Solution], list[dict]]  # frames, their Solution -> records


def solve_batch(
    frames: list[int],
    pictures: torch.Tensor,
    predecessors: dict[int, Predecessor],
    warm: WarmStarts | None,
    solve: Solve,
    judge: Judge,
) -> tuple[Solution, list[dict]]:
    """Solve a batch by the policy above: frames [B], their targets [B, C, T, T], the solved
    predecessors found ({frame: Predecessor}); `solve` runs the solver from the starts it is
    given (the rest cold), `judge` renders a Solution's frames as records with their "mae".

    Returns the kept Solution and its records, each with "start": "warm", "cold", or "cold
    again" (it fell behind warm, and the cold solve is kept), and "steps": the solver's steps
    for it, both solves counted.
    """
    starts = {}
    if warm is not None:
        known = [index for index, frame in enumerate(frames) if frame in predecessors]
        if known:
            previous = torch.stack([predecessors[frames[index]].picture for index in known])
            correlations = scene_correlation(pictures[known], previous)
            starts = {
                frames[index]: predecessors[frames[index]].embeddings
                for index, correlation in zip(known, correlations.tolist(), strict=True)
                if correlation >= warm.cut_correlation
            }
    solution = _solve_by_polish(frames, starts, predecessors, warm, solve)
    records = judge(frames, solution)
    for frame, record, steps in zip(frames, records, solution.steps.tolist(), strict=True):
        record.update(start="warm" if frame in starts else "cold", steps=steps)
    behind = [
        index
        for index, frame in enumerate(frames)
        if frame in starts and _fell_behind(records[index]["mae"], predecessors[frame], warm)
    ]
    if not behind:
        return solution, records

    again_frames = [frames[index] for index in behind]
    again = solve(again_frames, {}, 0)
    again_records = judge(again_frames, again)
    keep = list(range(len(frames)))  # each frame's index into [solution | again]
    for position, (index, record) in enumerate(zip(behind, again_records, strict=True)):
        steps = records[index]["steps"] + int(again.steps[position])
        if record["mae"] < records[index]["mae"]:  # else the warm picture stays
            keep[index] = len(frames) + position
            records[index] = {**record, "start": "cold again"}
        records[index]["steps"] = steps
    kept = concatenate([solution, again]).take(torch.tensor(keep))
    return replace(kept, steps=torch.tensor([record["steps"] for record in records])), records


def _solve_by_polish(
    frames: list[int],
    starts: dict[int, torch.Tensor],
    predecessors: dict[int, Predecessor],
    warm: WarmStarts | None,
    solve: Solve,
) -> Solution:
    """`solve` the frames, warm ones with the most steps `polish_steps` gives each: one call a
    length, one Solution in the order of `frames` (a frame's result does not depend on the
    batch it runs in)."""
    lengths = {frame: polish_steps(predecessors[frame], warm) for frame in starts}
    groups: dict[int, list[int]] = {}
    for frame in frames:  # cold frames go with the long polish's
        groups.setdefault(lengths.get(frame, warm.steps if warm else 0), []).append(frame)
    parts = [
        (group, solve(group, {frame: starts[frame] for frame in group if frame in starts}, steps))
        for steps, group in groups.items()
    ]
    return in_order(parts, frames)
