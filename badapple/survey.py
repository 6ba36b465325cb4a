"""--head best: which head of the played layer makes the best display of this video.

Heads differ: a head whose queries and keys are small reaches only a narrow range of logits
and shows the frames faintly. So a few frames of the video, spread over it, are solved on every
head of the layer, briefly and cold (the same frames, seeds and steps for every head), and
judged as optimize.py judges a frame (its picture's mae and corr against the target). The head
with the lowest mean mae plays the video.
"""

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from badapple.head import HeadWeights
from badapple.solvers import SolverSettings, solve_frames

if TYPE_CHECKING:
    from badapple.optimize import Look

SURVEY_FRAMES = 4  # frames of the video each head is tried on
SURVEY_STEPS = 150  # steps of each, cold: enough to tell a good head from a faint one


def survey_frames(wanted: range, count: int = SURVEY_FRAMES) -> list[int]:
    """`count` frames spread over the wanted ones, first and last included."""
    if len(wanted) <= count:
        return list(wanted)
    return sorted({wanted[round(i * (len(wanted) - 1) / (count - 1))] for i in range(count)})


def survey_heads(
    head_weights: Callable[[int], HeadWeights],
    heads: int,
    look: "Look",
    frames: list[int],
    pictures: torch.Tensor,
    method: str,
    settings: SolverSettings,
) -> list[dict]:
    """Each head's fit of `frames` (targets [n, 1, T, T] on the weights' device): a record a
    head, {"head", "mae", "corr"}, means over the frames, in head order. `head_weights(h)` is
    head h's HeadWeights."""
    brief = replace(settings, steps=SURVEY_STEPS, seeds=1)
    aimed = look.aimed(pictures)
    survey = []
    for head in range(heads):
        weights = head_weights(head)
        solution = solve_frames(method, weights, aimed, frames, brief, lambda _: None, {})
        records = look.judge(weights, pictures, solution.embeddings)
        corrs = [record["corr"] for record in records if record["corr"] is not None]
        survey.append(
            {
                "head": head,
                "mae": sum(record["mae"] for record in records) / len(records),
                "corr": sum(corrs) / len(corrs) if corrs else None,
            }
        )
    return survey


def best_head(survey: list[dict]) -> int:
    """The head of the lowest mean mae (the first, on a tie)."""
    return min(survey, key=lambda record: record["mae"])["head"]
