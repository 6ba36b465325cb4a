"""--head best and --layer best: which display (a layer and its played heads) shows this video
best.

Displays differ: a head whose reachable queries and keys are short in most directions moves
its scores over a few nats only and shows the frames speckled (atlas.py measures that from its
weights). The atlas ranks every display; a few of them, the candidates, are then solved on a few
frames spread over the video, briefly and cold (the same frames, seeds and steps for each), and
judged as optimize.py judges a frame (its picture's mae and corr against the target). A deeper
display costs a forward through every block before it for each frame, so the shallowest one
within `LAYER_MARGIN_MAE` of the best mae plays.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from badapple.atlas import LAYER_MARGIN_MAE, WEAK_SPAN_NATS, Atlas
from badapple.head import HeadWeights
from badapple.look import Look
from badapple.solvers import SolverSettings, solve_frames

SURVEY_FRAMES = 4  # frames of the video each display is tried on
SURVEY_STEPS = 150  # steps of each, cold: enough to tell a good display from a faint one
SHALLOW_LAYERS = 3  # --layer best tries the widest display of this many shallowest strong layers
WIDEST = 3  # and this many of the widest displays anywhere


@dataclass(frozen=True)
class Display:
    """Where a video plays: a layer and its heads (in the order of `layout.head_pictures`)."""

    layer: int
    heads: tuple[int, ...]


def survey_frames(wanted: range, count: int = SURVEY_FRAMES) -> list[int]:
    """`count` frames spread over the wanted ones, first and last included."""
    if len(wanted) <= count:
        return list(wanted)
    return sorted({wanted[round(i * (len(wanted) - 1) / (count - 1))] for i in range(count)})


def display_span(atlas: Atlas, display: Display) -> float:
    """A display's span: its weakest head's (one faint channel spoils the picture)."""
    return min(atlas.span(display.layer, head) for head in display.heads)


def candidates(
    atlas: Atlas,
    layers: list[int],
    heads: tuple[int, ...] | None,
    every_head: bool = False,
) -> list[Display]:
    """The displays worth a solve, shallowest first. `heads` None: any single head (--head
    best), else those heads on each layer. Of `layers`, with `every_head` (one layer given,
    --head best): all its heads; else the widest display of each of the SHALLOW_LAYERS shallowest
    layers that have a strong one (span at least WEAK_SPAN_NATS), and the WIDEST widest
    anywhere (all of them weak: the widest few)."""
    if every_head:
        return [Display(layer, (head,)) for layer in layers for head in range(atlas.heads)]
    options = (
        [Display(layer, (head,)) for layer in layers for head in range(atlas.heads)]
        if heads is None
        else [Display(layer, heads) for layer in layers]
    )
    widest = sorted(options, key=lambda display: -display_span(atlas, display))
    best_of_layer = {}
    for display in widest:  # widest first: the first seen of a layer is its best
        best_of_layer.setdefault(display.layer, display)
    strong = [
        best_of_layer[layer]
        for layer in sorted(best_of_layer)
        if display_span(atlas, best_of_layer[layer]) >= WEAK_SPAN_NATS
    ]
    chosen = {*strong[:SHALLOW_LAYERS], *widest[:WIDEST]}
    return sorted(chosen, key=lambda display: (display.layer, display.heads))


def survey_displays(
    weights_of: Callable[[Display], HeadWeights],
    displays: list[Display],
    look: Look,
    frames: list[int],
    pictures: torch.Tensor,
    method: str,
    settings: SolverSettings,
) -> list[dict]:
    """Each display's fit of `frames` (targets [n, C, T, T] on the weights' device): a record
    a display, {"layer", "heads", "mae", "corr"}, means over the frames, in the order given.
    `weights_of(display)` is its HeadWeights. A deeper display is solved as layer 0 is, on its
    own weights: its inputs are reached exactly (residual.py), so its fit is its picture."""
    brief = replace(settings, steps=SURVEY_STEPS, seeds=1)
    aimed = look.aimed(pictures)
    survey = []
    for display in displays:
        weights = weights_of(display)
        solution = solve_frames(method, weights, aimed, frames, brief, lambda _: None, {})
        records = look.judge(weights, pictures, solution.embeddings)
        corrs = [record["corr"] for record in records if record["corr"] is not None]
        survey.append(
            {
                "layer": display.layer,
                "heads": list(display.heads),
                "mae": sum(record["mae"] for record in records) / len(records),
                "corr": sum(corrs) / len(corrs) if corrs else None,
            }
        )
    return survey


def best_display(survey: list[dict]) -> Display:
    """The shallowest display within LAYER_MARGIN_MAE of the lowest mean mae (of those, the
    lowest mae; the first on a tie)."""
    lowest = min(record["mae"] for record in survey)
    near = [record for record in survey if record["mae"] <= lowest + LAYER_MARGIN_MAE]
    chosen = min(near, key=lambda record: (record["layer"], record["mae"]))
    return Display(chosen["layer"], tuple(chosen["heads"]))
