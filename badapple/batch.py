"""One batch of a video solved as optimize.py solves it: warm starts from the frames before,
the solve on the played layer, the inputs that reach a deeper one, and each frame judged.

`solve_video_batch` is the whole of it, shared with the benchmarks; the helpers find a batch's
predecessors (the last batch's frames, or an earlier run's chunk files) and keep each frame's
SOLVE_FACTS, the facts of how it was solved that its chunk file keeps.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from badapple.chunks import saved_inputs_embeds
from badapple.head import HeadWeights
from badapple.look import Look
from badapple.reachable import Factored, reachable_space, whiten_embeddings
from badapple.residual import CONVERGED_ERROR, LayerInput, reach_layer
from badapple.settings import Run
from badapple.solvers import Solution, SolverSettings, solve_frames
from badapple.storage import read_targets
from badapple.warm import Predecessor, WarmStarts, scene_cold_mae, solve_batch, warm_settings

# a record's facts of how its frame was solved, not drawn: how it started and its steps, and at a
# deeper layer how its inputs reached the layer (residual.py)
SOLVE_FACTS = ("start", "steps", "reach_steps", "reach_scale", "reach_error")


@dataclass(frozen=True)
class Solved:
    """A solved batch: what its chunk file keeps, what the played layer sees, its records."""

    saved: torch.Tensor | Factored  # the inputs_embeds [B, T', d], or their compact exact form
    rows: torch.Tensor  # [B, T', d] the played layer's input (at layer 0 the inputs_embeds)
    records: list[dict]  # `Look.judge`'s, with SOLVE_FACTS
    # each frame's mae as the warm-start policy judged it (before any blur): what its successor
    # is judged against (`Predecessor.mae`), whatever --blur draws
    policy_maes: list[float]


def solve_video_batch(
    method: str,
    weights: HeadWeights,
    look: Look,
    settings: SolverSettings,
    warm: WarmStarts | None,
    batch: list[int],
    pictures: torch.Tensor,
    predecessors: dict[int, Predecessor],
    report: Callable[[float], None],
    layer_input: LayerInput | None = None,
) -> Solved:
    """One batch of a video, as optimize.py solves it: frames [B] and their targets
    [B, C, T, T] by warm.py's policy from the `predecessors` found (their played layer's rows),
    on the played layer's `weights`; at a deeper layer the solution is then reached through
    `layer_input`'s blocks (residual.py), and every picture drawn from what the inputs give."""
    aimed = look.aimed(pictures)

    def solve(frames: list[int], starts: dict[int, torch.Tensor], polish: int) -> Solution:
        index = [batch.index(frame) for frame in frames]
        start_settings = warm_settings(settings, warm, polish) if starts else None
        return solve_frames(
            method, weights, aimed[index], frames, settings, report, starts, start_settings
        )

    # The policy judges the picture before any blur: --blur changes the pictures, never what is
    # solved. With a blur, the kept frames are then drawn again as shown.
    unblurred = replace(look, blur=0.0)

    def judge(frames: list[int], solution: Solution) -> list[dict]:
        index = [batch.index(frame) for frame in frames]
        return unblurred.judge(weights, pictures[index], solution.embeddings)

    solution, records = solve_batch(batch, pictures, predecessors, warm, solve, judge)
    policy_maes = [record["mae"] for record in records]
    saved, rows, facts = solution.factored or solution.embeddings, solution.embeddings, None
    if layer_input is not None:
        space = reachable_space(weights)
        reached = reach_layer(
            layer_input, whiten_embeddings(solution.embeddings, space, weights), space, weights
        )
        saved, rows = reached.inputs, reached.rows
        facts = [
            {**fact, "reach_steps": steps, "reach_scale": scale, "reach_error": error}
            for fact, steps, scale, error in zip(
                solve_facts(records),
                reached.steps.tolist(),
                reached.scale.tolist(),
                reached.error.tolist(),
                strict=True,
            )
        ]
    elif look.blur:
        facts = solve_facts(records)
    if facts is not None:  # drawn again: as shown, from what the layer sees
        shown = look.judge(weights, pictures, rows)
        records = [{**drawn, **fact} for drawn, fact in zip(shown, facts, strict=True)]
    return Solved(saved=saved, rows=rows, records=records, policy_maes=policy_maes)


def predecessors(
    run: Run,
    held: dict[int, Path],
    records: dict[int, dict],
    batch: list[int],
    solved: dict[int, Predecessor],
) -> dict[int, Predecessor]:
    """Each frame's predecessor, where it is solved: from the last batch (`solved`), or from a
    chunk file an earlier run saved (`held`, frame -> its file; a resumed run continues where
    it stopped), with its record's mae where `records` has one."""
    found = {frame: solved[frame - 1] for frame in batch if frame - 1 in solved}
    on_disk = [frame - 1 for frame in batch if frame not in found and frame - 1 in held]
    for _, before, embeddings in saved_inputs_embeds(held, on_disk):  # [k, T', d]
        pictures = torch.from_numpy(read_targets(run.folder, before, run.look.channels))
        played = played_rows(run, embeddings.to(run.device))
        for frame, rows, picture in zip(before, played, pictures, strict=True):
            record = records.get(frame, {})
            # a warm frame's chain is not on disk: its scene's cold solve is unknown
            cold_mae = scene_cold_mae(record, None)
            found[frame + 1] = Predecessor(
                rows, picture.to(run.device), record.get("mae"), cold_mae
            )
    return found


def played_rows(run: Run, embeddings: torch.Tensor) -> torch.Tensor:
    """What the played layer sees of inputs_embeds [B, T', d]: themselves at layer 0, the
    residual stream entering it deeper."""
    return run.layer_input(embeddings) if run.layer_input else embeddings


def solve_facts(records: list[dict]) -> list[dict]:
    """Each record's SOLVE_FACTS: how its frame was solved, kept in its chunk file."""
    return [{name: record[name] for name in SOLVE_FACTS if name in record} for record in records]


def warn_unreached(layer: int, frames: list[int], records: list[dict]) -> None:
    """Say which frames' inputs did not reach the deeper `layer` to float precision: their
    pictures are what the inputs give, not what was solved."""
    missed = [(f, r["reach_error"]) for f, r in zip(frames, records, strict=True)
              if r.get("reach_error", 0.0) > CONVERGED_ERROR]  # fmt: skip
    if missed:
        frame, error = max(missed, key=lambda item: item[1])
        warnings.warn(
            f"{len(missed)} frames' inputs reach layer {layer} only to a "
            f"relative error above {CONVERGED_ERROR:g} (worst: frame {frame}, {error:.1e}); "
            "their pictures are drawn from what the inputs give",
            stacklevel=3,
        )
