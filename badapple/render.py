"""Rendering: attention maps (softmax weights) as a picture, post-processed like the original.

Raw attention weights are all close to 0 (each row sums to 1 over up to 256 entries), so the map
is z-scored per row, contrast-stretched between its 1st and 99th percentiles, softened with a
gaussian blur, and coloured with magma.

    attention_picture    half frame, the original's rendering: one head, the upper triangle
                         (never attended to) black.
    full_frame_picture   full frame: head A shows the frame's lower triangle, head B the lower
                         triangle of the transposed frame, so Bᵀ fills the upper triangle.
"""

import matplotlib
import numpy as np
from scipy.ndimage import gaussian_filter

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0  # the contrast stretch maps these to 0 and 1
BLUR_SIGMA_PIXELS = 1.5
FLAT_ROW_STD = 1e-10  # rows flatter than this carry no picture and stay at 0
COLORMAP = "magma"


def row_z_scores(attention: np.ndarray) -> np.ndarray:
    """Each row's causal entries as z-scores over that row: [T, T] -> [T, T] float64, 0 above
    the diagonal and on flat rows (row 0, with its one entry, is always flat)."""
    tokens = attention.shape[-1]
    lower = np.tri(tokens, dtype=bool)  # [T, T] causal entries, diagonal included
    causal_count = np.arange(1, tokens + 1)[:, None]  # [T, 1]
    weights = np.where(lower, attention.astype(np.float64), 0.0)
    row_mean = weights.sum(axis=1, keepdims=True) / causal_count
    row_std = np.sqrt(
        np.where(lower, (weights - row_mean) ** 2, 0.0).sum(axis=1, keepdims=True) / causal_count
    )
    flat = row_std <= FLAT_ROW_STD
    return np.where(lower & ~flat, (weights - row_mean) / np.where(flat, 1.0, row_std), 0.0)


def _stretch(z_scores: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of the `shown` entries to [0, 1], clipped: [T, T]."""
    low, high = np.percentile(z_scores[shown], [LOW_PERCENTILE, HIGH_PERCENTILE])
    return np.clip((z_scores - low) / (high - low), 0, 1) if high > low else z_scores * 0


def attention_picture(attention: np.ndarray) -> np.ndarray:
    """Gray picture in [0, 1] of one causal attention map: [T, T] -> [T, T] float32."""
    lower = np.tri(attention.shape[-1], dtype=bool)
    stretched = _stretch(row_z_scores(attention), lower)
    blurred = gaussian_filter(stretched, sigma=BLUR_SIGMA_PIXELS)
    return np.where(lower, blurred, 0.0).astype(np.float32)


def full_frame_picture(attention_a: np.ndarray, attention_b: np.ndarray) -> np.ndarray:
    """Gray picture in [0, 1] of the whole square from two heads' causal maps: 2 x [T, T] ->
    [T, T] float32. Head A was fitted to the frame, head B to the transposed frame.

    Stitching, chosen so that no seam shows along the diagonal:
    - each head's map is z-scored per row as in `attention_picture`;
    - below the diagonal A's z-scores, above it Bᵀ's; the diagonal, which both heads show
      (pixel (i, i) of the frame and of its transpose), takes the mean of the two;
    - one percentile stretch over the whole square, so a z-score is the same brightness on
      both sides (two separate stretches would give the two triangles different levels);
    - one blur of the whole square: blurring each triangle with zeros beyond its edge would
      draw a dark line along the diagonal.
    Swapping the heads transposes the picture: full_frame_picture(b, a) is full_frame_picture(a, b)
    transposed.
    """
    tokens = attention_a.shape[-1]
    below = np.tri(tokens, k=-1, dtype=bool)  # [T, T] strictly lower
    z_a, z_b_transposed = row_z_scores(attention_a), row_z_scores(attention_b).T
    diagonal = (np.diagonal(z_a) + np.diagonal(z_b_transposed)) / 2  # [T]
    square = np.where(below, z_a, z_b_transposed)  # [T, T], diagonal overwritten next
    np.fill_diagonal(square, diagonal)
    stretched = _stretch(square, np.ones_like(below))
    return gaussian_filter(stretched, sigma=BLUR_SIGMA_PIXELS).astype(np.float32)


def colorize(picture: np.ndarray) -> np.ndarray:
    """A gray picture in [0, 1] through the colormap: [T, T] -> [T, T, 3] uint8 RGB."""
    rgba = matplotlib.colormaps[COLORMAP](picture)  # [T, T, 4] floats in [0, 1]
    return np.round(rgba[..., :3] * 255).astype(np.uint8)
