"""Solvers: find input embeddings whose layer-0 attention maps show the target pictures.

Every solver has the same signature, so `optimize.py --method NAME` can pick any of them:

    solve(weights, targets, frames, settings, on_step, starts=None) -> Solution

targets are what each head should show, one per head in `weights.heads` (made by
`targets.aimed_target`): shown ranges of sink-relative logits for true tone, row-centred logits
[B, H, T, T] for the z-score render; the solvers fit either, whatever picture they stand for.
frames are their 1-based numbers, which seed each frame's own random starts so that a frame's
result does not depend on the batch it ran in. `starts` ([B, T, d] embeddings, e.g. each frame's
predecessor in the video, see warm.py) replaces the random starts: one start per frame, one
phase of `settings.steps`.

Each frame stops taking steps once its loss has converged (`SolverSettings.converged_*`), at the
end of a cosine cycle where the rate is at its lowest: a batch's easy frames (black, stills)
then cost little, and its hard ones get every step.

    adam     the original's method: Adam on the full [T, d] embedding, 2,250 passes per frame.
    reduced  the same loop on what the heads actually see: each row's queries and keys, in the
             whitened coordinates of `reachable.py` (128 numbers a row instead of 1,600), kept
             inside the reachable ellipsoid and lifted back to embeddings at the end.
"""

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from badapple.atlas import played_spans
from badapple.head import HeadWeights, attention_scores, rotate, split_heads
from badapple.reachable import (
    Factored,
    ReachableSpace,
    lift_factored,
    project_to_space,
    reachable_space,
    whiten_embeddings,
    whitened_mean_squares,
    whitened_projections,
    whitened_query_side,
)
from badapple.targets import ShownRange, Target, causal_mask, fit_loss

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the original used
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class SolverSettings:
    steps: int = 1500  # optimisation steps of a frame, at most
    lr: float = 0.1  # peak learning rate
    lr_min: float = 1e-4  # learning rate at the end of each cosine cycle
    init_scale: float = 0.1  # std of the random starts
    seeds: int = 3  # random starts per frame; the best after steps/4 is refined
    seed: int = 0  # base of every frame's random generator
    cycle_steps: int | None = None  # steps of a cosine cycle; None: a quarter of the steps
    cycle_growth: float = 1  # each cycle this many times as long as the one before
    # A frame stops at the end of a cosine cycle once its loss is at most converged_loss, or
    # fell by less than the share converged_fall per cycle_steps steps over that cycle
    # (`_converged`). 0 and 0: every step is taken.
    converged_loss: float = 0.0
    converged_fall: float = 0.0


# Each method's defaults: the original's for adam; for reduced, measured on the full-video
# benchmark (benchmarks/full_video.py, README "Solvers"). One random start: on 8 shadow-art
# frames three starts reached mae 0.0032 and one 0.0029, for three times the first steps.
METHOD_DEFAULTS = {
    "adam": SolverSettings(),
    "reduced": SolverSettings(
        steps=750,
        lr=0.03,
        lr_min=1e-4,
        init_scale=0.1,
        seeds=1,
        # cycles of 50, 100, 200 and 400 steps: an easy frame stops after 50 or 150, a hard one
        # (a cross-fade's gray everywhere) gets long cycles to settle in
        cycle_steps=50,
        cycle_growth=2,
        # at 3e-4 a true-tone frame is within 1.7% of a nat of what shows each pixel right
        # (rms), under 1% of its level; a frame still losing 10% of its loss every 50 steps
        # is still getting better
        converged_loss=3e-4,
        converged_fall=0.1,
    ),
}


# The rates of METHOD_DEFAULTS were measured on heads that span up to ~128 nats (atlas.py: the
# GPT-2-XL-shaped stand-in's 125, SmolLM2's layer 1 head 6's 77). In whitened coordinates a step
# of one size moves a wider head's scores proportionally further: Mixtral-8x7B's and MPT-7B's
# random heads span ~585 nats, where a step at lr 0.03 moved a score ~18 nats and their frames
# never settled (mae 0.047 and 0.100 on 16 frames). So `reduced` scales a wider head's rates
# down by REFERENCE_SPAN_NATS / span: every step moves a score about as far as on the heads the
# defaults were measured on.
REFERENCE_SPAN_NATS = 128.0


# Under --render zscore a picture is each row's z-score, stretched and blurred: a fit within 0.1
# nat rms of the 6-nat target (1.7% of its range) draws the same picture. Measured on six frames
# of the dance video on the "hard" stand-in: their z-score pictures' mae did not fall after 150
# steps while the loss fell 10-100x more. So `reduced` stops a z-score frame there, where true
# tone, which shows every pixel's level, asks for 3e-4.
ZSCORE_CONVERGED_LOSS = 1e-2


def solver_settings(
    method: str, render: str = "sink", **overrides: float | int | None
) -> SolverSettings:
    """`method`'s default settings for `render`, with the `overrides` that are not None."""
    given = {name: value for name, value in overrides.items() if value is not None}
    defaults = METHOD_DEFAULTS[method]
    if method == "reduced" and render == "zscore":
        defaults = replace(defaults, converged_loss=ZSCORE_CONVERGED_LOSS)
    return replace(defaults, **given)


@dataclass(frozen=True)
class Solution:
    embeddings: torch.Tensor  # [B, T, d] the inputs_embeds to feed the model
    loss: torch.Tensor  # [B] each frame's loss against its targets (`fit_loss`), mean over heads
    steps: torch.Tensor  # [B] int64: the optimisation steps each frame took, all starts counted
    # the same embeddings in a compact exact form, where the method has one (reduced); then
    # `embeddings` is exactly `factored.inputs_embeds()`
    factored: Factored | None = None

    def take(self, index: torch.Tensor) -> "Solution":
        """The frames at `index` [n] (int64) of this Solution, in that order."""
        factored = self.factored
        if factored is not None:
            factored = Factored(factored.coefficients[index], factored.basis, factored.offset)
        return Solution(self.embeddings[index], self.loss[index], self.steps[index], factored)


StepCallback = Callable[[float], None]  # called with the batch's mean loss after each step


@dataclass(frozen=True)
class _Variables:
    """What a method optimises, and how that becomes losses, gradients and embeddings."""

    # variables [N, T, D], targets of N frames -> losses [N], gradient of their sum [N, T, D]
    losses_and_gradient: Callable[[torch.Tensor, Target], tuple[torch.Tensor, torch.Tensor]]
    project: Callable[[torch.Tensor], torch.Tensor]  # back into the feasible set, [N, T, D]
    # [N, T, D] -> [N, T, d], or the same in a compact exact form
    to_embeddings: Callable[[torch.Tensor], torch.Tensor | Factored]
    from_embeddings: Callable[[torch.Tensor], torch.Tensor]  # [N, T, d] -> [N, T, D]
    dims: int  # D


def frame_generator(seed: int, frame: int) -> torch.Generator:
    """A CPU random generator for one frame, the same whatever batch or device it runs in."""
    return torch.Generator().manual_seed(seed * 1_000_003 + frame)


def cycle_starts(total_steps: int, cycle_steps: int | None = None, growth: float = 1) -> list[int]:
    """The steps at which the cycles of `cosine_restarts_lr` start, 0 first. Without
    `cycle_steps` the original's: four cycles, each a quarter of the phase (at least 50 steps).
    With it: cycles of `cycle_steps`, each `growth` times as long as the one before (200 steps
    of 50 and growth 1: [0, 50, 100, 150]; 350 steps of 50 and growth 2: [0, 50, 150]). The
    last cycle absorbs the remainder. The step before each start is one at `lr_min`, where a
    frame may stop."""
    if cycle_steps is None:
        cycle_steps, growth = max(total_steps // 4, 50), 1
    starts, length = [0], cycle_steps
    # a cycle that would not fit whole is none: the one before takes its steps
    while starts[-1] + length + length * growth <= total_steps:
        starts.append(starts[-1] + length)
        length = round(length * growth)
    return starts


def cosine_restarts_lr(
    step: int,
    total_steps: int,
    lr: float,
    lr_min: float,
    cycle_steps: int | None = None,
    growth: float = 1,
) -> float:
    """Learning rate of `step` (0-based) in a phase of `total_steps`: cosine with warm restarts.

    Each cycle of `cycle_starts` falls from `lr` to exactly `lr_min`, so the phase ends at
    `lr_min`. (The original restarted on its very last step and made its final update at the
    peak rate.)
    """
    starts = cycle_starts(total_steps, cycle_steps, growth)
    cycle = bisect.bisect_right(starts, step) - 1
    end = starts[cycle + 1] if cycle + 1 < len(starts) else total_steps
    length = end - starts[cycle]
    if length == 1:
        return lr
    progress = (step - starts[cycle]) / (length - 1)
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * progress)) / 2


def _frame_losses(scores: torch.Tensor, targets: Target) -> torch.Tensor:
    """Loss per frame, averaged over heads: [B, H, T, T] -> [B]."""
    return fit_loss(scores, targets).mean(dim=-1)


def _autograd_losses(
    scores: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, Target], tuple[torch.Tensor, torch.Tensor]]:
    """losses_and_gradient of a scores function, by autograd."""

    def losses_and_gradient(current: torch.Tensor, targets: Target):
        with torch.enable_grad():
            current = current.detach().requires_grad_(True)
            losses = _frame_losses(scores(current), targets)
            (gradient,) = torch.autograd.grad(losses.sum(), current)
        return losses.detach(), gradient

    return losses_and_gradient


def _whitened_losses(
    space: ReachableSpace, weights: HeadWeights
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """losses_and_gradient in whitened coordinates against row-centred logits, by hand: 1.7x
    faster than autograd.

    With S = Q Kᵀ/√hd + b (b: ALiBi's bias of each key, or 0) and m_i its mean over row i's
    causal entries, the residual is r = (S - m)·lower - target and the loss Σ r² / (T(T+1)/2).
    Its gradient with respect to S is 2r/(T(T+1)/2) (centring is a projection and r is already
    centred), then dQ = dS K/√hd, dK = dSᵀ Q/√hd, and du = [dQ | dK] basisᵀ
    (`_whitened_gradient`). The row means come from prefix sums of K (and of b), so only the two
    matrix products touch all T² entries.

    Under a cap (Gemma 2) the scores are C = cap·tanh(S/cap) and r = (C - m)·lower - target
    with m the row means of C: no prefix sums then, and dS = dC · C'(S), C'(S) = 1 - (C/cap)².
    """
    heads, scale, bias, cap = len(weights.heads), weights.scale, weights.score_bias, weights.softcap

    def losses_and_gradient(whitened: torch.Tensor, targets: torch.Tensor):
        tokens = whitened.shape[1]
        lower = causal_mask(tokens, whitened.device)  # [T, T]
        causal_count = torch.arange(1, tokens + 1, device=whitened.device)[:, None]  # [T, 1]
        entries = tokens * (tokens + 1) / 2
        projected = whitened_projections(whitened, space)  # qk [B, T, D]
        query_side = whitened_query_side(whitened, space)  # u E, under a norm over all heads
        mean_squares = whitened_mean_squares(whitened, space, query_side)  # norm over all heads
        queries, keys = split_heads(projected, weights, mean_squares)  # 2 x [B, H, T, hd]
        residual = (queries @ keys.transpose(-1, -2)).mul_(scale)  # S [B, H, T, T]
        if bias is not None:
            residual.add_(bias[:, None, :tokens])  # b [H, 1, T]
        if cap is None:
            row_mean = (queries * keys.cumsum(dim=-2)).sum(-1, keepdim=True) * scale
            if bias is not None:
                row_mean += bias[:, :tokens].cumsum(dim=-1)[..., None]  # [H, T, 1]
            row_mean /= causal_count
        else:
            residual.div_(cap).tanh_()  # C / cap
            cap_slope = 1 - residual.square()  # C'(S) [B, H, T, T]
            residual.mul_(cap).masked_fill_(~lower, 0.0)  # C, causal entries
            row_mean = residual.sum(-1, keepdim=True) / causal_count
        residual.sub_(row_mean).masked_fill_(~lower, 0.0).sub_(targets)
        losses = residual.flatten(-2).square().sum(-1).mean(-1) / entries  # [B]
        residual.mul_(2 / entries / heads)  # dLoss/dS (dLoss/dC under a cap), over heads
        if cap is not None:
            residual.mul_(cap_slope)  # dLoss/dS = dLoss/dC · C'(S)
        query_gradient = residual @ keys * scale  # [B, H, T, hd]
        key_gradient = residual.transpose(-1, -2) @ queries * scale
        return losses, _whitened_gradient(
            query_gradient, key_gradient, projected, query_side, whitened, space, weights
        )

    return losses_and_gradient


def _whitened_shown_losses(
    space: ReachableSpace, weights: HeadWeights
) -> Callable[[torch.Tensor, ShownRange], tuple[torch.Tensor, torch.Tensor]]:
    """losses_and_gradient in whitened coordinates against shown ranges (`targets.shown_range`),
    by hand.

    Each pixel's logit relative to its row's sink is d = S - S[:, :1] = Q K'ᵀ/√hd + b' with
    K' = K - k_sink (each key less the sink's) and b' = b - b_sink (ALiBi's bias of each key
    less the sink's, a constant; 0 without), and its distance outside the range is
    e = d - clamp(d, low, high) (0 where the range is free, so also off the picture). The loss
    is Σ e² / P, P = (T-1)T/2 pixels; its gradient with respect to d is 2e/P, then
    dQ = dd K'/√hd, dK' = ddᵀ Q/√hd, and since every K' holds the sink's key with a minus,
    dK = dK' but for the sink's row, which takes minus their sum. Then du as in
    `_whitened_losses`. Working on d rather than S saves two passes over the T² entries.

    Under a cap (Gemma 2) each score is capped before the sink is taken off: with
    S = Q Kᵀ/√hd + b and C = cap·tanh(S/cap), d = C - C[:, :1]. Then dS = dd · C'(S),
    C'(S) = 1 - (C/cap)², but for the sink's column, whose capped score is in every d of its
    row: dS[i, 0] = -C'(S[i, 0]) Σ_j dd[i, j]. And dQ = dS K/√hd, dK = dSᵀ Q/√hd.
    """
    heads, scale, bias, cap = len(weights.heads), weights.scale, weights.score_bias, weights.softcap

    def losses_and_gradient(whitened: torch.Tensor, ranges: ShownRange):
        tokens = whitened.shape[1]
        pixels = (tokens - 1) * tokens / 2
        projected = whitened_projections(whitened, space)  # qk [B, T, D]
        query_side = whitened_query_side(whitened, space)  # u E, under a norm over all heads
        mean_squares = whitened_mean_squares(whitened, space, query_side)  # norm over all heads
        queries, keys = split_heads(projected, weights, mean_squares)  # 2 x [B, H, T, hd]
        if cap is None:
            relative_keys = keys - keys[..., :1, :]  # K' [B, H, T, hd]
            relative = (queries @ relative_keys.transpose(-1, -2)).mul_(scale)  # d [B, H, T, T]
            if bias is not None:
                relative.add_((bias[:, :tokens] - bias[:, :1])[:, None])  # b' [H, 1, T]
        else:
            relative = (queries @ keys.transpose(-1, -2)).mul_(scale)  # S [B, H, T, T]
            if bias is not None:
                relative.add_(bias[:, None, :tokens])
            relative.div_(cap).tanh_()  # C / cap
            cap_slope = 1 - relative.square()  # C'(S)
            relative.mul_(cap)  # C
            relative.sub_(relative[..., :1].clone())  # d
        outside = relative.sub_(torch.clamp(relative, ranges.low, ranges.high))  # e
        losses = torch.linalg.vector_norm(outside.flatten(-2), dim=-1).square_()  # [B, H]
        losses = losses.mean(-1) / pixels  # [B]
        outside.mul_(2 / pixels / heads)  # dLoss/dd, averaged over heads like the loss
        if cap is None:
            query_gradient = outside @ relative_keys * scale  # [B, H, T, hd]
            key_gradient = outside.transpose(-1, -2) @ queries * scale  # dK'
            key_gradient[..., 0, :] -= key_gradient.sum(dim=-2)  # the sink's key, in every K'
        else:
            sink_gradient = -outside.sum(dim=-1) * cap_slope[..., 0]  # dS[i, 0] [B, H, T]
            score_gradient = outside.mul_(cap_slope)  # dS; its sink column is 0 so far
            score_gradient[..., 0] += sink_gradient
            query_gradient = score_gradient @ keys * scale  # [B, H, T, hd]
            key_gradient = score_gradient.transpose(-1, -2) @ queries * scale
        return losses, _whitened_gradient(
            query_gradient, key_gradient, projected, query_side, whitened, space, weights
        )

    return losses_and_gradient


def _whitened_gradient(
    query_gradient: torch.Tensor,
    key_gradient: torch.Tensor,
    projected: torch.Tensor,
    query_side: torch.Tensor | None,
    whitened: torch.Tensor,
    space: ReachableSpace,
    weights: HeadWeights,
) -> torch.Tensor:
    """dLoss/du from dLoss/dQ and dLoss/dK of every played head [B, H, T, hd], at the rows'
    projections qk = offset + u basis [B, T, D] (the forward's, before any norm; under a norm
    over all heads, with the forward's u E [B, T, D]). The forward
    (`head.split_heads`) normalised each head's query and key (where the family has a norm
    after the projection), rotated each row by its position and
    gave each head its key head's keys, so back: rotate by the transpose, sum the key gradients
    of the heads that share a key head, then back through the norm: with x one head's
    projection, r = sqrt(mean(x²) + ε) and y = x/r ⊙ w,

        dx = (dy ⊙ w)/r - x · (x·(dy ⊙ w)) / (hd·r³)

    Under a norm over all heads (OLMo 2) the mean square m is not x's own but u E uᵀ
    (`reachable.whitened_mean_squares`; ‖u‖² - u E uᵀ for the keys), the same for every head
    of a row, so r = sqrt(m + ε) and

        dx = (dy ⊙ w)/r,   dm = -Σ_heads x·(dy ⊙ w) / (2r³),   du gains 2 u E dm
                                                              (the keys': 2 (u - u E) dm)

    The projections are then qk = offset + u basis, laid out [Q | K], so du = [dQ | dK] basisᵀ
    (plus the norm's term) -> [B, T, D]; for the rows x of a norm after each head's projection
    basis is ρ·I (`reachable._direction_coordinates`), and the product is by ρ."""
    batch, heads, tokens, head_dim = query_gradient.shape
    query_gradient = rotate(query_gradient, weights, inverse=True)
    key_gradient = rotate(key_gradient, weights, inverse=True)
    if weights.key_heads != heads or weights.key_of_head != tuple(range(heads)):
        shared = key_gradient.new_zeros(batch, weights.key_heads, tokens, head_dim)
        index = torch.tensor(weights.key_of_head, device=key_gradient.device)
        key_gradient = shared.index_add_(1, index, key_gradient)
    queries = projected[..., : heads * head_dim].view(batch, tokens, heads, head_dim)
    keys = projected[..., heads * head_dim :].view(batch, tokens, -1, head_dim)
    eps, norm_term = weights.query_key_norm_eps, 0.0
    if space.query_energy is not None:
        # u E [B, T, D] is ½ dm/du of the queries, u - u E that of the keys
        mean_squares = whitened_mean_squares(whitened, space, query_side)  # [B, T] each
        gradients = []
        for gradient, rows, weight, square, half_slope in (
            (query_gradient, queries, weights.query_norm, mean_squares[0], query_side),
            (key_gradient, keys, weights.key_norm, mean_squares[1], whitened - query_side),
        ):
            inverse_rms = torch.rsqrt(square + eps)[:, None, :, None]  # 1/r [B, 1, T, 1]
            weighted = gradient * weight  # dy ⊙ w [B, heads, T, hd]
            along = (weighted * rows.transpose(1, 2)).sum(dim=(1, 3))  # Σ x·(dy ⊙ w) [B, T]
            square_gradient = -along * inverse_rms[:, 0, :, 0].pow(3) / 2  # dm [B, T]
            norm_term = norm_term + 2 * half_slope * square_gradient[..., None]
            gradients.append(weighted * inverse_rms)  # dx
        query_gradient, key_gradient = gradients
    elif weights.query_norm is not None:
        query_gradient = _through_norm(
            query_gradient, queries.transpose(1, 2), weights.query_norm, eps
        )
        key_gradient = _through_norm(key_gradient, keys.transpose(1, 2), weights.key_norm, eps)
    queries = query_gradient.transpose(1, 2).reshape(batch, tokens, -1)  # [B, T, H·hd]
    keys = key_gradient.transpose(1, 2).reshape(batch, tokens, -1)  # [B, T, G·hd]
    projected_gradient = torch.cat([queries, keys], dim=-1)  # [B, T, D]
    if space.projection_scale is not None:  # basis is ρ·I
        return projected_gradient * space.projection_scale + norm_term
    return projected_gradient @ space.basis.T + norm_term


def _through_norm(
    gradient: torch.Tensor, projected: torch.Tensor, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """dx from dy of y = x/r ⊙ w, r = sqrt(mean(x²) + ε), as `_whitened_gradient` derives it:
    gradient, projected [B, heads, T, hd], weight [hd] -> [B, heads, T, hd]."""
    head_dim = projected.shape[-1]
    inverse_rms = torch.rsqrt(projected.square().mean(dim=-1, keepdim=True) + eps)  # 1/r
    weighted = gradient * weight  # dy ⊙ w
    along = (projected * weighted).sum(dim=-1, keepdim=True)  # x·(dy ⊙ w)
    return weighted * inverse_rms - projected * along * inverse_rms.pow(3) / head_dim


def _converged(
    losses: torch.Tensor, best_losses: torch.Tensor, settings: SolverSettings, cycle: int
):
    """Which frames are done at the end of a cycle of `cycle` steps: [N] losses now and the
    best of the cycle ends before -> [N] bool. At step 0 pass best_losses = inf: only the loss
    itself is judged.

    A frame has stalled when it lost less than `converged_fall` of its loss per
    `cycle_steps` steps: a cycle twice as long must cut the loss by 1 - (1 - fall)², not by
    the same share, or a frame far from its target (a weak display's, atlas.py) takes every
    step of the longest cycles for a picture barely better.
    """
    fell = 1 - losses / best_losses.clamp(min=torch.finfo(losses.dtype).tiny)
    per = settings.cycle_steps or cycle
    wanted = 1 - (1 - settings.converged_fall) ** (cycle / per)
    return (losses <= settings.converged_loss) | (fell < wanted)


def _adam_phase(
    start: torch.Tensor,
    variables: _Variables,
    targets: Target,
    steps: int,
    lr: float,
    settings: SolverSettings,
    on_step: StepCallback,
    *,
    may_stop: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on `variables` for at most `steps` from peak rate `lr`, with the cosine schedule:
    [N, T, D] -> the result [N, T, D] and the steps each frame took [N].

    Each frame has its own Adam moments. With `may_stop`, a frame is judged at each cycle's
    end, where the rate is at its lowest (`_converged`): one that has converged leaves the
    batch with the best point any cycle ended at (a restart can knock a frame off), and the
    others go on unchanged: the batch shrinks, and so does every later step's cost.
    """
    result = start.clone()
    taken = torch.full((len(start),), steps, dtype=torch.long)
    active = torch.arange(len(start), device=start.device)  # the frames still stepping
    current, first, second = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    best, best_losses = start.clone(), torch.full((len(start),), math.inf, device=start.device)
    beta1, beta2 = ADAM_BETAS
    starts = cycle_starts(steps, settings.cycle_steps, settings.cycle_growth)
    converges = settings.converged_loss > 0 or settings.converged_fall > 0
    stops = set(starts) if may_stop and converges else set()
    for step in range(steps):
        losses, gradient = variables.losses_and_gradient(current, targets)
        if step in stops:
            cycle = step - max((start for start in starts if start < step), default=0)
            going = ~_converged(losses, best_losses, settings, cycle)  # [n]
            better = losses < best_losses
            best[better], best_losses[better] = current[better], losses[better]
            if not going.all():
                result[active[~going]], taken[active[~going].cpu()] = best[~going], step
                kept = (active, current, first, second, best, best_losses, losses, gradient)
                active, current, first, second, best, best_losses, losses, gradient = (
                    tensor[going] for tensor in kept
                )
                targets = targets[going]
                if not len(active):
                    break
        rate = cosine_restarts_lr(
            step, steps, lr, settings.lr_min, settings.cycle_steps, settings.cycle_growth
        )
        first.lerp_(gradient, 1 - beta1)
        second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        # bias-corrected as torch.optim.Adam does: every active frame is at the same step
        denominator = (second / (1 - beta2 ** (step + 1))).sqrt_().add_(ADAM_EPS)
        current = variables.project(
            current.addcdiv(first, denominator, value=-rate / (1 - beta1 ** (step + 1)))
        )
        on_step(float(losses.mean()))
    else:
        if stops:  # the last cycle's end: the best of all of them
            losses, _ = variables.losses_and_gradient(current, targets)
            better = losses < best_losses
            best[better] = current[better]
            current = best
        result[active] = current
    return result, taken


@torch.no_grad()
def _solve(
    variables: _Variables,
    weights: HeadWeights,
    targets: Target,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: torch.Tensor | None,
) -> Solution:
    """Multi-start Adam from random starts, or one phase from `starts`.

    `seeds` random starts per frame run a quarter of the steps; each frame keeps its own best
    start (the original kept the best start of the whole chunk) for the remaining steps.
    """
    batch, tokens, device = len(frames), targets.shape[-1], targets.device
    explore_steps = settings.steps // 4 if settings.seeds > 1 and starts is None else 0
    if starts is not None:
        chosen = variables.from_embeddings(starts)
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
        chosen = random_starts[0]
        if explore_steps:
            # every start takes all its steps: they are judged against each other at the end
            repeated = targets.repeat(settings.seeds, *[1] * (len(targets.shape) - 1))
            explored, _ = _adam_phase(
                random_starts.flatten(0, 1),
                variables,
                repeated,
                explore_steps,
                settings.lr,
                settings,
                on_step,
                may_stop=False,
            )  # [seeds * B, T, D]
            losses, _ = variables.losses_and_gradient(explored, repeated)
            best_start = losses.view(settings.seeds, batch).argmin(dim=0)  # [B]
            chosen = explored.view(settings.seeds, batch, tokens, -1)[
                best_start, torch.arange(batch)
            ]
    solved, taken = _adam_phase(
        chosen, variables, targets, settings.steps - explore_steps, settings.lr, settings, on_step
    )
    lifted = variables.to_embeddings(solved)
    factored = lifted if isinstance(lifted, Factored) else None
    embeddings = factored.inputs_embeds() if factored is not None else lifted
    # Scored on the embeddings themselves: what the model will see, lift included.
    loss = _frame_losses(attention_scores(embeddings, weights), targets)
    steps = taken + explore_steps * settings.seeds
    return Solution(embeddings=embeddings, loss=loss, steps=steps, factored=factored)


def solve_adam(
    weights: HeadWeights,
    targets: Target,
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
    targets: Target,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: torch.Tensor | None = None,
) -> Solution:
    """Adam on each row's whitened queries and keys, inside the reachable ellipsoid, lifted back
    to embeddings at the end. One step costs ~50 MFLOP per frame against ~340 for adam."""
    space = reachable_space(weights)
    settings = span_scaled(settings, weights)
    losses = _whitened_shown_losses if isinstance(targets, ShownRange) else _whitened_losses
    variables = _Variables(
        losses_and_gradient=losses(space, weights),
        project=lambda rows: project_to_space(rows, space),
        to_embeddings=lambda whitened: lift_factored(whitened, space, weights),
        from_embeddings=lambda embeddings: whiten_embeddings(embeddings, space, weights),
        dims=space.dims,
    )
    return _solve(variables, weights, targets, frames, settings, on_step, starts)


def span_scaled(settings: SolverSettings, weights: HeadWeights) -> SolverSettings:
    """`settings` with their rates scaled to the widest played head (REFERENCE_SPAN_NATS):
    unchanged up to that span, times REFERENCE_SPAN_NATS / span beyond it."""
    widest = float(played_spans(weights).max())
    if weights.every_query_weight is not None:
        # Under a norm over all heads the span is a head's at an even share of its row's
        # energy, but a row may put its whole energy in the head, √(heads) times as long a
        # query (a key √(key heads) times): a step moves a score up to that much further. At
        # the rate of the span alone, 16 frames of an OLMo-2-1B stand-in played at mae 0.0024
        # (at 0.02: 0.0016), and with its projections and norm weights spread as trained ones
        # are (singular values over 100x, weights log-normal) at 0.011 (at 0.01: 0.0056).
        head_dim = weights.head_dim
        heads = weights.every_query_weight.shape[1] // head_dim
        key_heads = weights.every_key_weight.shape[1] // head_dim
        widest *= math.sqrt(heads * key_heads)
    if widest <= REFERENCE_SPAN_NATS:
        return settings
    factor = REFERENCE_SPAN_NATS / widest
    return replace(settings, lr=settings.lr * factor, lr_min=settings.lr_min * factor)


Solver = Callable[..., Solution]
SOLVERS: dict[str, Solver] = {"reduced": solve_reduced, "adam": solve_adam}


def solve_frames(
    method: str,
    weights: HeadWeights,
    targets: Target,
    frames: list[int],
    settings: SolverSettings,
    on_step: StepCallback,
    starts: dict[int, torch.Tensor],
    start_settings: SolverSettings | None = None,
) -> Solution:
    """Solve a batch in which the frames found in `starts` ({frame: [T, d]}) start there, with
    `start_settings` (warm.py's), and the others at random with `settings`: two calls of the
    solver, one Solution in the order of `frames`."""
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
            settings if group is cold else start_settings,
            on_step,
            group_starts,
        )
        parts.append((group, solution))
    return in_order(parts, list(range(len(frames))))


def in_order(parts: list[tuple[list, Solution]], order: list) -> Solution:
    """The Solutions of groups of one batch, [(the group's keys, its Solution)], as one with
    its frames in `order` (the keys of every group, as frames or indices, in the batch's
    order)."""
    if len(parts) == 1:
        return parts[0][1]
    solved = [key for group, _ in parts for key in group]
    kept = torch.tensor([solved.index(key) for key in order])
    return concatenate([solution for _, solution in parts]).take(kept)


def concatenate(parts: list[Solution]) -> Solution:
    """Solutions of parts of one batch as one, frames in the order of `parts`. Parts of a batch
    share its weights, so reduced ones share one basis and offset."""
    factored = None
    if parts[0].factored is not None:
        first = parts[0].factored
        coefficients = torch.cat([solution.factored.coefficients for solution in parts])
        factored = Factored(coefficients, first.basis, first.offset)
    return Solution(
        embeddings=torch.cat([solution.embeddings for solution in parts]),
        loss=torch.cat([solution.loss for solution in parts]),
        steps=torch.cat([solution.steps for solution in parts]),
        factored=factored,
    )
