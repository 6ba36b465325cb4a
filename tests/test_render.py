import numpy as np
import pytest
import torch

from badapple.render import (
    attention_picture,
    colorize,
    full_frame_sink_picture,
    sink_picture,
)
from tests.maps import exact_sink_scores


def causal_softmax(scores: np.ndarray) -> np.ndarray:
    lower = np.tri(scores.shape[0], dtype=bool)
    exp = np.where(lower, np.exp(scores - scores.max()), 0.0)
    return exp / exp.sum(axis=1, keepdims=True)


def test_picture_is_in_unit_range_with_a_black_upper_triangle_and_row_zero():
    rng = np.random.default_rng(0)
    picture = attention_picture(causal_softmax(rng.normal(size=(32, 32))))
    assert picture.shape == (32, 32) and picture.dtype == np.float32
    assert picture.min() >= 0 and picture.max() <= 1
    assert (picture[np.triu_indices(32, 1)] == 0).all()


def test_uniform_attention_renders_flat():
    # every row uniform: std 0 in every row, so every z-score stays 0 and the stretch is empty
    picture = attention_picture(causal_softmax(np.zeros((16, 16))))
    assert np.allclose(picture, 0)


def test_percentile_stretch_maps_bright_and_dark_to_the_ends():
    # a bright square in the lower-left corner on a dark background, strongly contrasted
    scores = np.full((64, 64), -5.0)
    scores[40:, :20] = 5.0
    picture = attention_picture(causal_softmax(scores))
    assert picture[50, 10] > 0.8  # inside the square, away from its blurred edge
    assert picture[60, 40] < 0.15  # the dark part of the same rows
    # Rows 0..39 are uniform (nothing to show): their z-score 0 lands mid-way in the stretch,
    # the original's known limit that all-black and all-white rows look the same.
    assert 0.2 < picture[30, 10] < 0.6


def test_colorize_is_magma_rgb():
    picture = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    rgb = colorize(picture)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].max() < 10  # magma starts near black
    assert rgb[3, 3].min() > 180  # and ends near pale yellow


def sink_attention(relative: np.ndarray) -> np.ndarray:
    """The causal attention map whose pixels are `relative` ([T, T], lower triangle) times
    their row's sink weight: [T+1, T+1], token 0 the sink (its own row attends only to itself)."""
    tokens = len(relative) + 1
    weights = np.zeros((tokens, tokens))
    weights[0, 0] = 1.0
    weights[1:, 0] = 1.0  # the sink, before normalising
    weights[1:, 1:] = np.tril(relative)
    return weights / weights.sum(axis=1, keepdims=True)


def test_one_white_pixel_in_a_black_row_renders_white_there_and_black_elsewhere():
    relative = np.zeros((6, 6))
    relative[4, 2] = 1.0  # as much attention as the sink gets
    picture = sink_picture(sink_attention(relative))
    assert picture.shape == (6, 6) and picture.dtype == np.float32
    assert picture[4, 2] == pytest.approx(1.0)
    assert np.count_nonzero(picture) == 1  # every other pixel of that row and the rest: black


def test_all_black_and_all_white_rows_render_black_and_white():
    relative = np.zeros((5, 5))
    relative[3] = 1.0  # row 3 all white, every other row all black
    picture = sink_picture(sink_attention(relative))
    assert np.allclose(picture[3, :4], 1.0)
    assert np.allclose(np.delete(picture, 3, axis=0), 0.0)
    # the original's rendering shows neither: both are flat rows, z-score 0, so the white row
    # comes out as dark as the black ones
    original = attention_picture(sink_attention(relative)[1:, 1:])
    assert original[3, :4].max() < 0.5 and np.allclose(original[3, :4], original[4, :4])


def test_gray_renders_its_level_after_an_exact_fit():
    frame = np.full((8, 8), 0.5, dtype=np.float32)
    frame[6, :3] = 0.25
    logits = exact_sink_scores(torch.from_numpy(frame), 6.0).numpy()  # [9, 9]
    picture = sink_picture(causal_softmax(logits))
    lower = np.tri(8, dtype=bool)
    assert np.allclose(picture[lower], frame[lower], atol=1e-6)
    assert (picture[~lower] == 0).all()


def test_black_sits_contrast_nats_under_the_sink_and_clips_at_white():
    relative = np.zeros((3, 3))
    relative[2] = [np.exp(-6.0), 2.0, 0.5]  # more than the sink's weight clips to white
    picture = sink_picture(sink_attention(relative))
    assert picture[2, 0] == pytest.approx(np.exp(-6.0))  # 0.25%: black to the eye
    assert picture[2, 1] == 1.0 and picture[2, 2] == pytest.approx(0.5)


def test_blur_is_off_by_default_for_true_tone_and_softens_when_asked():
    relative = np.zeros((16, 16))
    relative[10, 5] = 1.0
    attention = sink_attention(relative)
    assert np.count_nonzero(sink_picture(attention)) == 1
    blurred = sink_picture(attention, blur_sigma=1.5)
    assert 0 < blurred[10, 5] < 1 and blurred[10, 6] > 0


def test_full_frame_true_tone_puts_head_b_transposed_above_the_diagonal():
    lower_a = np.tril(np.full((4, 4), 0.2))
    lower_b = np.tril(np.full((4, 4), 0.8))
    picture = full_frame_sink_picture(sink_attention(lower_a), sink_attention(lower_b))
    assert np.allclose(picture[np.tril_indices(4, -1)], 0.2)
    assert np.allclose(picture[np.triu_indices(4, 1)], 0.8)
    assert np.allclose(np.diagonal(picture), 0.5)  # both heads show the diagonal: their mean


def test_colorize_takes_any_matplotlib_colormap():
    picture = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    gray = colorize(picture, "gray")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert gray[0, 0, 0] == 0 and gray[1, 0, 0] == 255 and gray[0, 1, 0] in (127, 128)
