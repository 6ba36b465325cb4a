"""Layouts: which picture each head is asked to show, and how their maps become one picture.

A frame has C channels (1 for gray), each a [T, T] picture in [0, 1].

    half  the original's: channel c on head c. A causal map has nothing above its diagonal, so
          the picture shows the frame's lower triangle and the rest stays black.
    full  two heads a channel, of one forward pass on one input: heads 0..C-1 ("A") fitted to
          the channels, heads C..2C-1 ("B") to the transposed channels. A's maps show the lower
          triangle, Bᵀ's the upper one; stitched (render.py) they make the whole square. A
          bidirectional head (BERT: not `causal`) sees every token, so there one head a channel
          shows the whole square itself.

All heads read the same ln_1 output, so the solvers treat them as one problem: each row's
queries and keys of every head together (reachable.py), one loss averaged over the heads.
"""

import numpy as np
import torch

from badapple.metrics import picture_metrics
from badapple.render import (
    SINK_TOKENS,
    attention_picture,
    full_frame_picture,
    full_frame_sink_picture,
    sink_picture,
    square_sink_picture,
)

LAYOUTS = ("half", "full")
HEADS_PER_CHANNEL = {"half": 1, "full": 2}
SCORED_REGION = {"half": "lower", "full": "square"}  # what each layout's picture shows


def token_count(size: int, render: str) -> int:
    """Tokens a frame of `size` x `size` pixels takes: one a row, plus the sink's."""
    return size + SINK_TOKENS[render]


def heads_per_channel(layout: str, causal: bool = True) -> int:
    return HEADS_PER_CHANNEL[layout] if causal else 1


def head_pictures(frames: torch.Tensor, layout: str, causal: bool = True) -> torch.Tensor:
    """The target of each head, in the order of the run's heads: [B, C, T, T] -> [B, H, T, T]."""
    if layout == "half" or not causal:
        return frames
    return torch.cat([frames, frames.transpose(-1, -2)], dim=1)  # A: channels, B: transposed


def layout_picture(
    attention: np.ndarray, layout: str, render: str, blur_sigma: float, causal: bool = True
) -> np.ndarray:
    """The picture in [0, 1] of one frame's maps, channel by channel:
    [H, T', T'] -> [C, T, T] float32 (T' = T + 1 under the sink render)."""
    if not causal:  # one head a channel, the whole square (true tone only)
        return np.stack([square_sink_picture(maps, blur_sigma) for maps in attention])
    channels = len(attention) // HEADS_PER_CHANNEL[layout]
    if layout == "half":
        draw = sink_picture if render == "sink" else attention_picture
        return np.stack([draw(attention[c], blur_sigma) for c in range(channels)])
    draw = full_frame_sink_picture if render == "sink" else full_frame_picture
    return np.stack(
        [draw(attention[c], attention[channels + c], blur_sigma) for c in range(channels)]
    )


def channel_correlations(picture: np.ndarray, target: np.ndarray, layout: str) -> list:
    """corr of each channel over what the layout shows: [C, T, T] pictures -> [C] (None where
    a channel is constant there)."""
    return [
        picture_metrics(shown, wanted, region=SCORED_REGION[layout])["corr"]
        for shown, wanted in zip(picture, target, strict=True)
    ]


def layout_metrics(picture: np.ndarray, target: np.ndarray, layout: str) -> dict:
    """mae, iou and corr over what the layout's picture shows (`SCORED_REGION`), all channels
    together: [C, T, T] pictures."""
    return picture_metrics(picture, target, region=SCORED_REGION[layout])
