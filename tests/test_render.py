import numpy as np

from badapple.render import attention_picture, colorize


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
