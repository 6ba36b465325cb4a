"""Rendering: an attention map (softmax weights) as a picture, post-processed like the original.

Raw attention weights are all close to 0 (each row sums to 1 over up to 256 entries), so the map
is z-scored per row, contrast-stretched between its 1st and 99th percentiles, softened with a
gaussian blur, and coloured with magma. The upper triangle is never attended to and stays black.
"""

import matplotlib
import numpy as np
from scipy.ndimage import gaussian_filter

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0  # the contrast stretch maps these to 0 and 1
BLUR_SIGMA_PIXELS = 1.5
FLAT_ROW_STD = 1e-10  # rows flatter than this carry no picture and stay at 0
COLORMAP = "magma"


def attention_picture(attention: np.ndarray) -> np.ndarray:
    """Gray picture in [0, 1] of one causal attention map: [T, T] -> [T, T] float32."""
    tokens = attention.shape[-1]
    lower = np.tri(tokens, dtype=bool)  # [T, T] causal entries, diagonal included
    causal_count = np.arange(1, tokens + 1)[:, None]  # [T, 1]
    weights = np.where(lower, attention.astype(np.float64), 0.0)
    row_mean = weights.sum(axis=1, keepdims=True) / causal_count
    row_std = np.sqrt(
        np.where(lower, (weights - row_mean) ** 2, 0.0).sum(axis=1, keepdims=True) / causal_count
    )
    flat = row_std <= FLAT_ROW_STD  # row 0 (one entry) is always flat
    z_scores = np.where(lower & ~flat, (weights - row_mean) / np.where(flat, 1.0, row_std), 0.0)

    low, high = np.percentile(z_scores[lower], [LOW_PERCENTILE, HIGH_PERCENTILE])
    stretched = np.clip((z_scores - low) / (high - low), 0, 1) if high > low else z_scores * 0
    blurred = gaussian_filter(stretched, sigma=BLUR_SIGMA_PIXELS)
    return np.where(lower, blurred, 0.0).astype(np.float32)


def colorize(picture: np.ndarray) -> np.ndarray:
    """A gray picture in [0, 1] through the colormap: [T, T] -> [T, T, 3] uint8 RGB."""
    rgba = matplotlib.colormaps[COLORMAP](picture)  # [T, T, 4] floats in [0, 1]
    return np.round(rgba[..., :3] * 255).astype(np.uint8)
