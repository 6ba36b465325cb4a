"""Layouts: which picture each head is asked to show, and how their maps become one picture.

    half  the original's: one head fitted to the frame. A causal map has nothing above its
          diagonal, so the picture shows the frame's lower triangle and the rest stays black.
    full  two heads of one forward pass on one input: head A fitted to the frame, head B to the
          transposed frame. A's map shows the lower triangle, Bᵀ's the upper one; stitched
          (`render.full_frame_picture`) they make the whole square.

Both heads read the same ln_1 output, so the solvers treat them as one problem: each row's
queries and keys of A and B together (reachable.py), one loss averaged over the heads.
"""

import numpy as np
import torch

from badapple.metrics import picture_metrics
from badapple.render import attention_picture, full_frame_picture

LAYOUTS = ("half", "full")
HEADS_PER_LAYOUT = {"half": 1, "full": 2}
SCORED_REGION = {"half": "lower", "full": "square"}  # what each layout's picture shows


def head_pictures(frames: torch.Tensor, layout: str) -> torch.Tensor:
    """The target of each head, in the order of the run's heads: [B, T, T] -> [B, H, T, T]."""
    if layout == "half":
        return frames[:, None]
    return torch.stack([frames, frames.transpose(-1, -2)], dim=1)  # A: frame, B: frameᵀ


def layout_picture(attention: np.ndarray, layout: str) -> np.ndarray:
    """The gray picture in [0, 1] of one frame's maps: [H, T, T] -> [T, T] float32."""
    if layout == "half":
        return attention_picture(attention[0])
    return full_frame_picture(attention[0], attention[1])


def layout_metrics(picture: np.ndarray, target: np.ndarray, layout: str) -> dict:
    """mae, iou and corr over what the layout's picture shows (`SCORED_REGION`)."""
    return picture_metrics(picture, target, region=SCORED_REGION[layout])
