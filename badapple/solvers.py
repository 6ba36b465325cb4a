"""Solvers: find input embeddings whose layer-0 attention maps show the target pictures.

Every solver has the same signature, so `optimize.py --method NAME` can pick any of them:

    solve(weights, targets, frames, settings, on_step, starts=None) -> Solution

targets are the row-centred logits each head should produce, [B, H, T, T] (one per head in
`weights.heads`, made by `targets.aimed_logits`: the solvers fit logits, whatever picture and
render they stand for); frames are their 1-based numbers, which seed each frame's own random
starts so that a frame's result does not depend on the batch it ran in. `starts` ([B, T, d]
embeddings, e.g. each frame's predecessor in the video) replaces the random starts: one start
per frame, `settings.warm_steps` steps.

    adam     the original's method: Adam on the full [T, d] embedding, 2,250 passes per frame.
    reduced  the same loop on what the heads actually see: each row's queries and keys, in the
             whitened coordinates of `reachable.py` (128 numbers a row instead of 1,600), kept
             inside the reachable ellipsoid and lifted back to embeddings at the end.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from badapple.head import HeadWeights, attention_scores
from badapple.reachable import (
    Factored,
    ReachableSpace,
    lift_factored,
    project_to_ball,
    queries_keys_from_whitened,
    reachable_space,
    whiten_embeddings,
)
from badapple.targets import causal_mask, logit_space_loss


@dataclass(frozen=True)
class SolverSettings:
    steps: int = 1500  # optimisation steps per frame started at random
    lr: float = 0.1  # peak learning rate
    lr_min: float = 1e-4  # learning rate at the end of each cosine cycle
    init_scale: float = 0.1  # std of the random starts
    seeds: int = 3  # random starts per frame; the best after steps/4 is refined
    seed: int = 0  # base of every frame's random generator
    warm_steps: int = 0  # steps of a frame started from its predecessor; 0: no warm starts
    warm_lr: float = 0.01  # peak learning rate of those: a small polish, not a restart


# Each method's defaults: the original's for adam; for reduced, the benchmark's choice
# (benchmarks/solvers.py, README "Solvers").
METHOD_DEFAULTS = {
    "adam": SolverSettings(),
    "reduced": SolverSettings(
        steps=200,
        lr=0.05,
        lr_min=1e-4,
        init_scale=0.1,
        seeds=3,
        warm_steps=100,
        warm_lr=0.005,
    ),
}


def solver_settings(method: str, **overrides: float | int | None) -> SolverSettings:
    """`method`'s default settings with the `overrides` that are not None."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return replace(METHOD_DEFAULTS[method], **given)


@dataclass(frozen=True)
class Solution:
    embeddings: torch.Tensor  # [B, T, d] the inputs_embeds to feed GPT-2
    loss: torch.Tensor  # [B] each frame's logit-space loss against its targets, mean over heads
    # the same embeddings in a compact exact form, where the method has one (reduced); then
    # `embeddings` is exactly `factored.inputs_embeds()`
    factored: Factored | None = None


StepCallback = Callable[[float], None]  # called with the batch's mean loss after each step


@dataclass(frozen=True)
class _Variables:
    """What a method optimises, and how that becomes losses, gradients and embeddings."""

    # variables [N, T, D], targets [N, H, T, T] -> losses [N], gradient of their sum [N, T, D]
    losses_and_gradient: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    project: Callable[[torch.Tensor], torch.Tensor]  # back into the feasible set, [N, T, D]
    # [N, T, D] -> [N, T, d], or the same in a compact exact form
    to_embeddings: Callable[[torch.Tensor], torch.Tensor | Factored]
    from_embeddings: Callable[[torch.Tensor], torch.Tensor]  # [N, T, d] -> [N, T, D]
    dims: int  # D


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


def _frame_losses(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Loss per frame, averaged over heads: [B, H, T, T] -> [B]."""
    return logit_space_loss(scores, targets).mean(dim=-1)


def _autograd_losses(
    scores: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """losses_and_gradient of a scores function, by autograd."""

    def losses_and_gradient(current: torch.Tensor, targets: torch.Tensor):
        with torch.enable_grad():
            current = current.detach().requires_grad_(True)
            losses = _frame_losses(scores(current), targets)
            (gradient,) = torch.autograd.grad(losses.sum(), current)
        return losses.detach(), gradient

    return losses_and_gradient


def _whitened_losses(
    space: ReachableSpace, weights: HeadWeights
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """losses_and_gradient in whitened coordinates, by hand: 1.7x faster than autograd.

    With S = Q Kᵀ/√hd and m_i its mean over row i's causal entries, the residual is
    r = (S - m)·lower - target and the loss Σ r² / (T(T+1)/2). Its gradient with respect to S is
    2r/(T(T+1)/2) (centring is a projection and r is already centred), then
    dQ = dS K/√hd, dK = dSᵀ Q/√hd, du = [dQ | dK] basisᵀ. The row means come from prefix sums
    of K, so only the two matrix products touch all T² entries.
    """
    heads, scale = len(weights.heads), weights.scale

    def losses_and_gradient(whitened: torch.Tensor, targets: torch.Tensor):
        batch, tokens, _ = whitened.shape
        lower = causal_mask(tokens, whitened.device)  # [T, T]
        causal_count = torch.arange(1, tokens + 1, device=whitened.device)[:, None]  # [T, 1]
        entries = tokens * (tokens + 1) / 2
        queries, keys = queries_keys_from_whitened(whitened, space, heads)  # 2 x [B, H, T, hd]
        row_mean = (queries * keys.cumsum(dim=-2)).sum(-1, keepdim=True) * scale / causal_count
        residual = (queries @ keys.transpose(-1, -2)).mul_(scale)  # S [B, H, T, T]
        residual.sub_(row_mean).masked_fill_(~lower, 0.0).sub_(targets)
        losses = residual.flatten(-2).square().sum(-1).mean(-1) / entries  # [B]
        residual.mul_(2 / entries / heads)  # dLoss/dS, averaged over heads like the loss
        query_gradient = residual @ keys * scale  # [B, H, T, hd]
        key_gradient = residual.transpose(-1, -2) @ queries * scale
        projected = torch.stack([query_gradient, key_gradient]).permute(1, 3, 0, 2, 4)
        return losses, projected.reshape(batch, tokens, -1) @ space.basis.T  # [B, T, D]

    return losses_and_gradient


def _adam_phase(
    start: torch.Tensor,
    variables: _Variables,
    targets: torch.Tensor,
    steps: int,
    lr: float,
    settings: SolverSettings,
    on_step: StepCallback,
) -> torch.Tensor:
    """Adam on `variables` for `steps` from peak rate `lr`, with the cosine schedule:
    [N, T, D] -> [N, T, D]."""
    current = start.clone()
    optimiser = torch.optim.Adam([current], lr=lr)
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = cosine_restarts_lr(step, steps, lr, settings.lr_min)
        # The gradient of the summed loss, so each frame's is its own whatever the batch size.
        losses, current.grad = variables.losses_and_gradient(current, targets)
        optimiser.step()
        current.copy_(variables.project(current))
        on_step(float(losses.mean()))
    return current


@torch.no_grad()
def _solve(
    variables: _Variables,
    weights: HeadWeights,
    targets: torch.Tensor,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: torch.Tensor | None,
) -> Solution:
    """Multi-start Adam from random starts, or one warm phase from `starts`.

    `seeds` random starts per frame run a quarter of the steps; each frame keeps its own best
    start (the original kept the best start of the whole chunk) for the remaining steps.
    """
    batch, tokens, device = len(frames), targets.shape[-1], targets.device
    if starts is not None:
        chosen = variables.from_embeddings(starts)
        steps, lr = settings.warm_steps, settings.warm_lr
    else:
        random_starts = (
            torch.stack(
                [
                    torch.randn(
                        settings.seeds,
                        tokens,
                        variables.dims,
                        generator=frame_generator(settings.seed, frame),
                    )
                    for frame in frames
                ],
                dim=1,
            ).to(device)
            * settings.init_scale
        )  # [seeds, B, T, D]
        random_starts = variables.project(random_starts)
        explore_steps = settings.steps // 4 if settings.seeds > 1 else 0
        if explore_steps:
            repeated = targets.repeat(settings.seeds, 1, 1, 1)
            explored = _adam_phase(
                random_starts.flatten(0, 1),
                variables,
                repeated,
                explore_steps,
                settings.lr,
                settings,
                on_step,
            )  # [seeds * B, T, D]
            losses, _ = variables.losses_and_gradient(explored, repeated)
            best_start = losses.view(settings.seeds, batch).argmin(dim=0)  # [B]
            chosen = explored.view(settings.seeds, batch, tokens, -1)[
                best_start, torch.arange(batch)
            ]
        else:
            chosen = random_starts[0]
        steps, lr = settings.steps - explore_steps, settings.lr
    solved = _adam_phase(chosen, variables, targets, steps, lr, settings, on_step)
    lifted = variables.to_embeddings(solved)
    factored = lifted if isinstance(lifted, Factored) else None
    embeddings = factored.inputs_embeds() if factored is not None else lifted
    # Scored on the embeddings themselves: what GPT-2 will see, lift included.
    loss = _frame_losses(attention_scores(embeddings, weights), targets)
    return Solution(embeddings=embeddings, loss=loss, factored=factored)


def solve_adam(
    weights: HeadWeights,
    targets: torch.Tensor,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: torch.Tensor | None = None,
) -> Solution:
    """The original's method: Adam on the full [T, d] embedding of each frame."""
    variables = _Variables(
        losses_and_gradient=_autograd_losses(
            lambda embeddings: attention_scores(embeddings, weights)
        ),
        project=lambda embeddings: embeddings,
        to_embeddings=lambda embeddings: embeddings,
        from_embeddings=lambda embeddings: embeddings,
        dims=weights.d_model,
    )
    return _solve(variables, weights, targets, frames, settings, on_step, starts)


def solve_reduced(
    weights: HeadWeights,
    targets: torch.Tensor,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: torch.Tensor | None = None,
) -> Solution:
    """Adam on each row's whitened queries and keys, inside the reachable ellipsoid, lifted back
    to embeddings at the end. One step costs ~50 MFLOP per frame against ~340 for adam."""
    space = reachable_space(weights)
    variables = _Variables(
        losses_and_gradient=_whitened_losses(space, weights),
        project=lambda whitened: project_to_ball(whitened, space.radius),
        to_embeddings=lambda whitened: lift_factored(whitened, space, weights),
        from_embeddings=lambda embeddings: whiten_embeddings(embeddings, space, weights),
        dims=space.dims,
    )
    return _solve(variables, weights, targets, frames, settings, on_step, starts)


Solver = Callable[..., Solution]
SOLVERS: dict[str, Solver] = {"reduced": solve_reduced, "adam": solve_adam}


def solve_frames(
    method: str,
    weights: HeadWeights,
    targets: torch.Tensor,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: dict[int, torch.Tensor],
) -> Solution:
    """Solve a batch in which the frames found in `starts` ({frame: [T, d]}) start there and the
    others at random: two calls of the solver, one Solution in the order of `frames`."""
    warm = [index for index, frame in enumerate(frames) if frame in starts]
    cold = [index for index, frame in enumerate(frames) if frame not in starts]
    parts = []  # (indices, Solution)
    for group in (warm, cold):
        if not group:
            continue
        group_starts = None
        if group is warm:
            group_starts = torch.stack([starts[frames[index]] for index in group])
            group_starts = group_starts.to(targets.device)
        solution = SOLVERS[method](
            weights,
            targets[group],
            [frames[index] for index in group],
            settings,
            on_step,
            group_starts,
        )
        parts.append((group, solution))
    if len(parts) == 1:
        return parts[0][1]
    order = torch.tensor([index for group, _ in parts for index in group])
    unsorted = torch.argsort(order)  # back to the order of `frames`
    embeddings = torch.cat([solution.embeddings for _, solution in parts])[unsorted]
    loss = torch.cat([solution.loss for _, solution in parts])[unsorted]
    factored = None
    if parts[0][1].factored is not None:  # both groups share the weights: one basis, one offset
        first = parts[0][1].factored
        coefficients = torch.cat([solution.factored.coefficients for _, solution in parts])
        factored = Factored(coefficients[unsorted], first.basis, first.offset)
    return Solution(embeddings=embeddings, loss=loss, factored=factored)
