"""Targets: a video frame as the attention map a causal head should produce, in logit space.

A frame is a [T, T] picture in [0, 1]. Row i of a causal attention map may only look at keys
0..i, and its weights sum to 1, so the target keeps the lower triangle of each row and
normalises it. The loss then compares logits, not weights: on post-softmax weights its
gradients were ~250x weaker (the original's finding). Softmax ignores a constant added to a
row, so both sides are centred per row over the row's i+1 causal entries before comparing.
"""

import math
from dataclasses import dataclass

import torch

PIXEL_FLOOR = 1e-8  # keeps black pixels finite: log(1e-8) sits ~18 nats under white
FLAT_ROW_RANGE = 1e-3  # a row whose causal pixels span less than this shows no pattern
FLAT_FRAME_MARK = 0.02  # in a frame of such rows only: the share of each row marked
DEFAULT_CONTRAST_NATS = 6.0  # black this far under white: e^-6 = 0.25% of white's weight
# How near white (or black) a pixel may be and still count as white (black): then only its
# other side is fitted (`shown_range`). 5 of 255 levels, about the noise of compressed video in
# flat black and white.
PIXEL_TOLERANCE = 0.02


def causal_mask(tokens: int, device: torch.device | str | None = None) -> torch.Tensor:
    """True where row i may attend to column j (j <= i): [T, T] bool, lower triangle."""
    return torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()


def row_normalised_target(frames: torch.Tensor) -> torch.Tensor:
    """Each row's causal prefix as a probability distribution: [..., T, T] -> same, 0 above."""
    mask = causal_mask(frames.shape[-1], frames.device)
    weights = (frames + PIXEL_FLOOR) * mask
    return weights / weights.sum(dim=-1, keepdim=True)


def centre_rows(logits: torch.Tensor) -> torch.Tensor:
    """Subtract each row's mean over its causal entries; entries above the diagonal become 0."""
    tokens = logits.shape[-1]
    mask = causal_mask(tokens, logits.device)
    causal_count = torch.arange(1, tokens + 1, device=logits.device, dtype=logits.dtype)  # [T]
    masked = logits.masked_fill(~mask, 0.0)
    row_mean = masked.sum(dim=-1, keepdim=True) / causal_count[:, None]
    return (masked - row_mean).masked_fill(~mask, 0.0)


def target_logits(frames: torch.Tensor) -> torch.Tensor:
    """The logits the head should produce for `frames` in [0, 1]: [..., T, T], row-centred."""
    probabilities = row_normalised_target(frames)
    return centre_rows(torch.log(probabilities + PIXEL_FLOOR))


def logit_space_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of row-centred logits over the lower triangle, per map.

    scores: raw attention scores [..., T, T]; targets: from `target_logits`. Returns [...].
    Divides by T(T+1)/2 (32,896 for T=256), the number of causal entries, like the original.
    """
    tokens = scores.shape[-1]
    difference = centre_rows(scores) - targets  # 0 above the diagonal on both sides
    return difference.square().sum(dim=(-2, -1)) / (tokens * (tokens + 1) / 2)


def picture_target(frames: torch.Tensor, contrast_nats: float) -> torch.Tensor:
    """Target logits aimed at the rendered picture rather than at the exact distribution.

    frames [..., H, T, T] in [0, 1], the maps of a frame's H heads -> row-centred logits, same
    shape, 0 above the diagonal.

    The picture is a per-row z-score of the attention weights, so what it shows is each row's
    pattern, not its range: black only has to sit a few nats under white (e^-6 = 0.25% of the
    weight) instead of the original's ~18, which no head can reach everywhere. So logits are
    `contrast_nats` * pixel.

    A row whose causal pixels are all equal has no pattern at all, and a z-score blows whatever
    residue the fit leaves there up to full-range noise. Such a row gets a mark instead, in the
    opposite colour from its left edge: one pixel, so the row renders as an even tone with a
    faint dot at the edge; or, in a frame with no pattern anywhere on any head (black between
    scenes), the first FLAT_FRAME_MARK (2%) of every row, so that the marks and not the rows'
    even tone fill the top 1% that the percentile stretch maps to white: the frame renders black
    (white) with a thin wedge at its left edge.
    """
    tokens = frames.shape[-1]
    mask = causal_mask(tokens, frames.device)
    brightest = frames.masked_fill(~mask, -1.0).amax(dim=-1)  # [..., T]
    darkest = frames.masked_fill(~mask, 2.0).amin(dim=-1)
    flat = brightest - darkest < FLAT_ROW_RANGE  # [..., T]
    # a frame's heads are judged together: full frame shows them in one picture
    flat_frame = flat.flatten(-2).all(dim=-1)[..., None, None]  # [..., 1, 1]
    causal_count = torch.arange(1, tokens + 1, device=frames.device)  # [T]
    mark_width = torch.where(flat_frame, torch.ceil(causal_count * FLAT_FRAME_MARK), 1.0)
    columns = torch.arange(tokens, device=frames.device)
    in_mark = flat[..., None] & (columns < mark_width[..., None])  # [..., T, T]
    opposite = (brightest < 0.5).to(frames.dtype)[..., None]  # [..., T, 1]: white on black rows
    return centre_rows(contrast_nats * torch.where(in_mark, opposite, frames))


@dataclass(frozen=True)
class ShownRange:
    """For each pixel of a true-tone map, the sink-relative logits that show it right.

    Entry (i, j) bounds d = S[i, j] - S[i, 0], the score of token i on token j relative to its
    score on the sink; -inf / +inf where a side is free, and both outside the picture (the sink's
    column, the first row, above the diagonal). [..., T+1, T+1] each.
    """

    low: torch.Tensor
    high: torch.Tensor

    def __getitem__(self, index) -> "ShownRange":  # frames of a batch: [B, ...] -> [b, ...]
        return ShownRange(self.low[index], self.high[index])

    def repeat(self, *sizes: int) -> "ShownRange":  # as Tensor.repeat
        return ShownRange(self.low.repeat(*sizes), self.high.repeat(*sizes))

    def to(self, device: torch.device | str) -> "ShownRange":
        return ShownRange(self.low.to(device), self.high.to(device))

    @property
    def shape(self) -> torch.Size:
        return self.low.shape

    @property
    def device(self) -> torch.device:
        return self.low.device


Target = torch.Tensor | ShownRange  # what a solver fits: row-centred logits, or shown ranges


def shown_range(
    frames: torch.Tensor,
    contrast_nats: float,
    tolerance: float = PIXEL_TOLERANCE,
    causal: bool = True,
) -> ShownRange:
    """What a true-tone picture must show: frames [..., T, T] in [0, 1] -> ShownRange of
    [..., T+1, T+1]: token 0 is the sink and frame row r is token r+1, so pixel (r, c) is the
    attention of token r+1 on token c+1.

    The picture shows pixel (r, c) as clip(exp(d), 0, 1) with d its logit relative to the sink
    (`render.sink_relative`). So a pixel p is aimed at

        white   p >= 1 - tolerance: d >= ln(p - tolerance); brighter still shows white
        black   p <= e^-contrast: d <= -contrast_nats; darker still shows black
        dark    p <= tolerance (over black): d <= ln(p + tolerance), as dark as it likes
        gray    otherwise: d = ln p exactly (a range of one point)

    A fit to these ranges pays only for what the picture shows wrong: nothing for white above
    the sink or black far under -contrast, which the squared error of the logits themselves
    (row-centred, as under the z-score render) pays for. And d is measured against the sink,
    so a row whose level is off as a whole pays in every pixel, as the band it shows does; the
    row-centred error paid for it once. The tolerance keeps compression noise in flat white and
    black one-sided. A gray pixel gets no tolerance: with a range of +-tolerance around it too,
    the colour benchmark's photo-like clip came out at mae 0.015-0.016 against 0.005-0.012 now
    (benchmarks/colour.py, gray and colour half frame). A causal head shows the frame's lower
    triangle, and the rest is free; a bidirectional one (`causal` False) the whole square.
    """
    black = math.exp(-contrast_nats)
    level = torch.log(frames.clamp(min=black))  # ln p, floored at black
    free = torch.full_like(frames, math.inf)
    white, dark = frames >= 1 - tolerance, frames <= tolerance
    low = torch.where(white, torch.log((frames - tolerance).clamp(min=black)), level)
    low = torch.where(dark, -free, low)
    high = torch.where(dark, torch.log(frames + tolerance), level)
    high = torch.where(frames <= black, -contrast_nats, high)
    high = torch.where(white, free, high)
    tokens = frames.shape[-1] + 1
    shown = causal_mask(tokens - 1, frames.device)  # frame pixels in the picture: lower triangle
    if not causal:
        shown = torch.ones_like(shown)
    ranges = []
    for bound, free in ((low, -math.inf), (high, math.inf)):
        full = torch.full((*frames.shape[:-2], tokens, tokens), free, dtype=frames.dtype)
        full = full.to(frames.device)
        full[..., 1:, 1:] = torch.where(shown, bound, free)
        ranges.append(full)
    return ShownRange(*ranges)


def shown_range_loss(scores: torch.Tensor, ranges: ShownRange) -> torch.Tensor:
    """Mean squared distance of each pixel's sink-relative logit to its shown range, per map:
    scores [..., T+1, T+1] -> [...], divided by the T(T+1)/2 pixels of the frame's triangle."""
    relative = scores - scores[..., :1]  # d = S[i, j] - S[i, 0]
    outside = (relative - ranges.high).clamp(min=0) + (relative - ranges.low).clamp(max=0)
    pixels = (scores.shape[-1] - 1) * scores.shape[-1] / 2
    return outside.square().sum(dim=(-2, -1)) / pixels


def fit_loss(scores: torch.Tensor, targets: Target) -> torch.Tensor:
    """The loss a solver fits, per map: [..., T', T'] scores -> [...]; `shown_range_loss` for
    shown ranges (true tone), `logit_space_loss` for row-centred logits (z-score)."""
    if isinstance(targets, ShownRange):
        return shown_range_loss(scores, targets)
    return logit_space_loss(scores, targets)


def aimed_target(
    pictures: torch.Tensor, render: str, contrast_nats: float | None, causal: bool = True
) -> Target:
    """What a solver fits for each head's picture: [..., T, T] -> [..., T', T'].

    sink    `shown_range` (T' = T + 1)
    zscore  the original's `target_logits` when contrast_nats is None, else `picture_target`,
            aimed at the original's z-score rendering (T' = T)
    """
    if render == "sink":
        return shown_range(pictures, contrast_nats, causal=causal)
    if contrast_nats is None:
        return target_logits(pictures)
    return picture_target(pictures, contrast_nats)
