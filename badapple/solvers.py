"""Solvers: find input embeddings whose layer-0 attention scores match target logits.

Every solver has the same signature, so `optimize.py --method NAME` can pick any of them:

    solve(weights, targets, frames, settings, on_step) -> Solution

targets are `targets.target_logits` of a batch of frames [B, H, T, T] (one map per head in
`weights.heads`); frames are their 1-based numbers, used to seed each frame's own random start
so a frame's result does not depend on which batch it was in.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from badapple.head import HeadWeights, attention_scores
from badapple.targets import logit_space_loss


@dataclass(frozen=True)
class SolverSettings:
    steps: int = 1500  # optimisation steps per frame
    lr: float = 0.1  # peak learning rate
    lr_min: float = 1e-4  # learning rate at the end of each cosine cycle
    init_scale: float = 0.1  # std of the random starting embeddings
    seeds: int = 3  # random starts per frame; the best after steps/4 is refined
    seed: int = 0  # base of every frame's random generator


@dataclass(frozen=True)
class Solution:
    embeddings: torch.Tensor  # [B, T, d] the inputs_embeds to feed GPT-2
    loss: torch.Tensor  # [B] logit-space loss of each frame, averaged over heads


StepCallback = Callable[[float], None]  # called with the batch's mean loss after each step


def frame_generator(seed: int, frame: int) -> torch.Generator:
    """A CPU random generator for one frame, the same whatever batch or device it runs in."""
    return torch.Generator().manual_seed(seed * 1_000_003 + frame)


def cosine_restarts_lr(step: int, total_steps: int, lr: float, lr_min: float) -> float:
    """Learning rate of `step` (0-based) in a phase of `total_steps`: cosine with warm restarts.

    Cycles last a quarter of the phase (at least 50 steps) and each falls from `lr` to exactly
    `lr_min`; the last cycle absorbs the remainder, so the phase ends at `lr_min`. (The original
    restarted on its very last step and made its final update at the peak rate.)
    """
    period = max(total_steps // 4, 50)
    cycles = max(total_steps // period, 1)
    cycle = min(step // period, cycles - 1)
    length = period if cycle < cycles - 1 else total_steps - cycle * period
    if length == 1:
        return lr
    progress = (step - cycle * period) / (length - 1)
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * progress)) / 2


def _frame_losses(
    embeddings: torch.Tensor, weights: HeadWeights, targets: torch.Tensor
) -> torch.Tensor:
    """Loss per frame, averaged over heads: [B, T, d] -> [B]."""
    return logit_space_loss(attention_scores(embeddings, weights), targets).mean(dim=-1)


def _adam_phase(
    start: torch.Tensor,
    weights: HeadWeights,
    targets: torch.Tensor,
    steps: int,
    settings: SolverSettings,
    on_step: StepCallback,
) -> torch.Tensor:
    """Adam on the embeddings themselves for `steps`, with the cosine schedule: [N, T, d]."""
    embeddings = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([embeddings], lr=settings.lr)
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = cosine_restarts_lr(step, steps, settings.lr, settings.lr_min)
        # Summed, not averaged, so each frame's gradient is its own whatever the batch size.
        loss = _frame_losses(embeddings, weights, targets).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        on_step(loss.item() / len(start))
    return embeddings.detach()


def solve_adam(
    weights: HeadWeights,
    targets: torch.Tensor,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
) -> Solution:
    """The original's method: Adam on the full [T, d] embedding of each frame.

    `seeds` random starts per frame run a quarter of the steps; each frame keeps its own best
    start (the original kept the best start of the whole chunk) for the remaining steps.
    """
    batch, tokens, d_model = len(frames), targets.shape[-1], weights.d_model
    device = targets.device
    starts = (
        torch.stack(
            [
                torch.randn(
                    settings.seeds, tokens, d_model, generator=frame_generator(settings.seed, f)
                )
                for f in frames
            ],
            dim=1,
        ).to(device)
        * settings.init_scale
    )  # [seeds, B, T, d]

    explore_steps = settings.steps // 4 if settings.seeds > 1 else 0
    if explore_steps:
        explored = _adam_phase(
            starts.flatten(0, 1),
            weights,
            targets.repeat(settings.seeds, 1, 1, 1),
            explore_steps,
            settings,
            on_step,
        )  # [seeds * B, T, d]
        with torch.no_grad():
            losses = _frame_losses(explored, weights, targets.repeat(settings.seeds, 1, 1, 1))
        best_start = losses.view(settings.seeds, batch).argmin(dim=0)  # [B]
        chosen = explored.view(settings.seeds, batch, tokens, d_model)[
            best_start, torch.arange(batch)
        ]
    else:
        chosen = starts[0]
    embeddings = _adam_phase(
        chosen, weights, targets, settings.steps - explore_steps, settings, on_step
    )
    with torch.no_grad():
        loss = _frame_losses(embeddings, weights, targets)
    return Solution(embeddings=embeddings, loss=loss)


Solver = Callable[[HeadWeights, torch.Tensor, list[int], SolverSettings, StepCallback], Solution]
SOLVERS: dict[str, Solver] = {"adam": solve_adam}
