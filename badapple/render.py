"""Rendering: attention maps (softmax weights) as a picture in [0, 1], then through a colormap.

Two renders, picked with `optimize.py --render`:

    sink    true tone (the default). Every map has an attention sink, token 0, and frame row r
            is token r+1 (targets.shown_range). A pixel is its weight relative to its row's
            weight on the sink: clip(A[r+1, c+1] / A[r+1, 0], 0, 1). White is as much
            attention as the sink gets, black none, gray its share: each pixel shows its level,
            not only its row's pattern. No stretch; no blur by default.
    zscore  the original's: per-row z-score, 1st..99th percentile stretch, gaussian blur. It
            shows each row's pattern and never its level (a row that is 90% white shows its
            white as mid-tone), kept for faithful comparison with the original.

Each has a half-frame picture (one head, the lower triangle; above the diagonal is never
attended to and stays black) and a full-frame one (head A fitted to the frame, head B to its
transpose; A below the diagonal, Bᵀ above, their mean on it).
"""

import matplotlib
import numpy as np
from scipy.ndimage import gaussian_filter

RENDERS = ("sink", "zscore")
SINK_TOKENS = {"sink": 1, "zscore": 0}  # tokens in front of the frame's rows
DEFAULT_BLUR_SIGMA_PIXELS = {"sink": 0.0, "zscore": 1.5}  # the zscore one is the original's
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0  # the zscore stretch maps these to 0 and 1
FLAT_ROW_STD = 1e-10  # rows flatter than this carry no picture and stay at 0
DEFAULT_COLORMAP = "magma"


# --- sink: true tone ------------------------------------------------------------------------


def sink_relative(attention: np.ndarray, causal: bool = True) -> np.ndarray:
    """Each pixel's weight over its row's sink weight, clipped to [0, 1]: [T+1, T+1] -> [T, T]
    float64; a causal map's 0 above the diagonal (it never attends there)."""
    weights = attention.astype(np.float64)
    pixels, sink = weights[1:, 1:], weights[1:, :1]  # [T, T], [T, 1]
    # the sink's weight is a softmax output, > 0 unless it underflowed: then the row is white
    relative = np.clip(pixels / np.maximum(sink, np.finfo(np.float64).tiny), 0.0, 1.0)
    return np.where(np.tri(len(pixels), dtype=bool), relative, 0.0) if causal else relative


def _blurred(picture: np.ndarray, blur_sigma: float) -> np.ndarray:
    return gaussian_filter(picture, sigma=blur_sigma) if blur_sigma > 0 else picture


def sink_picture(attention: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """Half frame, true tone: [T+1, T+1] -> [T, T] float32 in [0, 1], black above the diagonal."""
    relative = sink_relative(attention)
    lower = np.tri(len(relative), dtype=bool)
    return np.where(lower, _blurred(relative, blur_sigma), 0.0).astype(np.float32)


def square_sink_picture(attention: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """A bidirectional head's whole square, true tone: [T+1, T+1] -> [T, T] float32 in [0, 1].
    Every token sees every other, so one head's map is the full frame, sink-relative as the
    causal ones."""
    square = sink_relative(attention, causal=False)
    return np.clip(_blurred(square, blur_sigma), 0.0, 1.0).astype(np.float32)


def full_frame_sink_picture(
    attention_a: np.ndarray, attention_b: np.ndarray, blur_sigma: float = 0.0
) -> np.ndarray:
    """Full frame, true tone: 2 x [T+1, T+1] -> [T, T] float32 in [0, 1].

    Both heads measure their pixels against the same kind of reference, their row's sink, so
    the two triangles share one absolute scale: no stretch is needed to match them, and no seam
    or mid-tone row appears where z-scores of different rows would meet.
    """
    square = _stitched(sink_relative(attention_a), sink_relative(attention_b).T)
    # one blur of the whole square: blurring each triangle with zeros beyond its edge would
    # draw a dark line along the diagonal
    return np.clip(_blurred(square, blur_sigma), 0.0, 1.0).astype(np.float32)


def _stitched(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """`lower` below the diagonal, `upper` above it, their mean on the diagonal, which both
    show (pixel (i, i) of the frame and of its transpose): [T, T] x 2 -> [T, T]."""
    below = np.tri(len(lower), k=-1, dtype=bool)
    square = np.where(below, lower, upper)
    np.fill_diagonal(square, (np.diagonal(lower) + np.diagonal(upper)) / 2)
    return square


# --- zscore: the original's rendering -------------------------------------------------------


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


def attention_picture(
    attention: np.ndarray, blur_sigma: float = DEFAULT_BLUR_SIGMA_PIXELS["zscore"]
) -> np.ndarray:
    """Half frame, the original's rendering: [T, T] -> [T, T] float32 in [0, 1]."""
    lower = np.tri(attention.shape[-1], dtype=bool)
    stretched = _stretch(row_z_scores(attention), lower)
    return np.where(lower, _blurred(stretched, blur_sigma), 0.0).astype(np.float32)


def full_frame_picture(
    attention_a: np.ndarray,
    attention_b: np.ndarray,
    blur_sigma: float = DEFAULT_BLUR_SIGMA_PIXELS["zscore"],
) -> np.ndarray:
    """Full frame in the original's rendering: 2 x [T, T] -> [T, T] float32 in [0, 1].
    Head A was fitted to the frame, head B to the transposed frame.

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
    square = _stitched(row_z_scores(attention_a), row_z_scores(attention_b).T)
    stretched = _stretch(square, np.ones_like(square, dtype=bool))
    return _blurred(stretched, blur_sigma).astype(np.float32)


# --- colour ---------------------------------------------------------------------------------


def colorize(picture: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A gray picture in [0, 1] through a matplotlib colormap: [T, T] -> [T, T, 3] uint8 RGB."""
    rgba = matplotlib.colormaps[colormap](picture)  # [T, T, 4] floats in [0, 1]
    return np.round(rgba[..., :3] * 255).astype(np.uint8)
