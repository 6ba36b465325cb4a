import math

import pytest
import torch

from badapple.targets import (
    PIXEL_FLOOR,
    ShownRange,
    aimed_target,
    centre_rows,
    fit_loss,
    logit_space_loss,
    picture_target,
    row_normalised_target,
    shown_range,
    shown_range_loss,
    target_logits,
)


def test_row_normalised_target_is_a_causal_distribution():
    frames = torch.rand(2, 8, 8)
    probabilities = row_normalised_target(frames)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 8))
    assert (probabilities.triu(1) == 0).all()


def test_a_row_with_one_white_pixel_puts_all_its_weight_there():
    frame = torch.zeros(4, 4)
    frame[3, 1] = 1.0
    probabilities = row_normalised_target(frame)
    assert probabilities[3, 1] > 1 - 1e-6
    # a black pixel's weight is ~1e-8, and log(1e-8 + 1e-8) sits ~17.7 nats under white's log(1)
    logits = target_logits(frame)
    assert math.isclose(
        float(logits[3, 1] - logits[3, 0]), -math.log(2 * PIXEL_FLOOR), rel_tol=1e-4
    )


def test_all_black_and_all_white_rows_are_both_uniform():
    black, white = torch.zeros(6, 6), torch.ones(6, 6)
    assert torch.allclose(row_normalised_target(black)[5], torch.full((6,), 1 / 6))
    assert torch.allclose(target_logits(black), torch.zeros(6, 6), atol=1e-5)
    assert torch.allclose(target_logits(white), torch.zeros(6, 6), atol=1e-5)


def test_centre_rows_removes_each_rows_causal_mean():
    logits = torch.tensor([[5.0, 9.0, 9.0], [1.0, 3.0, 9.0], [0.0, 3.0, 6.0]])
    centred = centre_rows(logits)
    expected = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-3.0, 0.0, 3.0]])
    assert torch.allclose(centred, expected)


def test_loss_ignores_row_offsets_and_the_upper_triangle():
    targets = target_logits(torch.rand(3, 16, 16))
    scores = targets + torch.randn(3, 16, 1) * 5 + torch.randn(3, 16, 16).triu(1) * 100
    assert torch.allclose(logit_space_loss(scores, targets), torch.zeros(3), atol=1e-9)


def test_loss_is_mean_square_over_the_causal_entries():
    tokens = 4
    targets = torch.zeros(tokens, tokens)
    scores = torch.zeros(tokens, tokens)
    scores[3, 0], scores[3, 1] = 2.0, -2.0  # row 3 keeps mean 0, so nothing is centred away
    # (4 + 4) / (4 * 5 / 2) = 0.8
    assert math.isclose(float(logit_space_loss(scores, targets)), 0.8, rel_tol=1e-6)


def test_picture_target_puts_black_a_fixed_contrast_under_white():
    frame = torch.zeros(4, 4)
    frame[3, 1] = 1.0
    frame[2, :2] = 1.0
    logits = picture_target(frame[None], contrast_nats=6.0)[0]
    assert math.isclose(float(logits[3, 1] - logits[3, 0]), 6.0, rel_tol=1e-6)
    assert torch.allclose(logits.sum(-1), torch.zeros(4), atol=1e-5)  # centred rows
    assert (logits.triu(1) == 0).all()


def test_picture_target_gives_flat_rows_one_pixel_of_structure():
    black, white = torch.zeros(5, 5), torch.ones(5, 5)
    # every row of an all-black frame: column 0 white, the rest equal and below it
    dark = picture_target(black[None], contrast_nats=6.0)[0]
    assert math.isclose(float(dark[4, 0] - dark[4, 3]), 6.0, rel_tol=1e-6)
    assert torch.allclose(dark[4, 1:], dark[4, 1].expand(4))
    # an all-white one: column 0 black
    bright = picture_target(white[None], contrast_nats=6.0)[0]
    assert math.isclose(float(bright[4, 0] - bright[4, 3]), -6.0, rel_tol=1e-6)
    # a row with any pattern keeps it as it is
    frame = torch.zeros(5, 5)
    frame[4, 3] = 1.0
    assert float(picture_target(frame[None], 6.0)[0, 4, 0]) < 0


def test_a_frame_without_any_pattern_marks_two_percent_of_every_row():
    logits = picture_target(torch.zeros(1, 120, 120), contrast_nats=6.0)[0]
    # row 119 has 120 causal pixels: its first ceil(2.4) = 3 are marked white
    marked = logits[119] > logits[119, 60]
    assert marked.nonzero().flatten().tolist() == [0, 1, 2]
    # while a flat row of a frame with a pattern elsewhere keeps a one-pixel mark
    frame = torch.zeros(120, 120)
    frame[100:, 40:60] = 1.0
    logits = picture_target(frame[None], contrast_nats=6.0)[0]
    assert (logits[99, :100] > logits[99, 60]).nonzero().flatten().tolist() == [0]
    # and so does one of a head whose partner head shows a pattern (one full-frame picture)
    heads = torch.stack([torch.zeros(120, 120), frame])
    assert (picture_target(heads, 6.0)[0, 119] > 0).nonzero().flatten().tolist() == [0]


def test_a_shown_range_is_what_shows_each_pixel_right():
    frame = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.99, 0.004, 0.0]])
    ranges = shown_range(frame, contrast_nats=6.0, tolerance=0.02)  # [4, 4]: token 0 the sink
    low, high = ranges.low, ranges.high
    # white: at least 1 - 0.02 of the sink's weight, as bright above it as it likes
    assert math.isclose(float(low[1, 1]), math.log(0.98), rel_tol=1e-5) and high[1, 1] == math.inf
    assert math.isclose(float(low[3, 1]), math.log(0.97), rel_tol=1e-5) and high[3, 1] == math.inf
    # gray: its level exactly
    assert math.isclose(float(low[2, 1]), math.log(0.5), rel_tol=1e-6)
    assert math.isclose(float(high[2, 1]), math.log(0.5), rel_tol=1e-6)
    # black: at least `contrast` nats under the sink, as dark as it likes
    assert low[2, 2] == -math.inf and math.isclose(float(high[2, 2]), -6.0, rel_tol=1e-6)
    # a dark gray over the black level but under the tolerance: dark as it likes, up to +0.02
    assert low[3, 2] == -math.inf and math.isclose(float(high[3, 2]), math.log(0.024), rel_tol=1e-5)
    # free outside the picture: the sink's column, the sink's own row, above the diagonal
    for row, column in ((1, 0), (0, 0), (0, 1), (1, 2), (2, 3)):
        assert low[row, column] == -math.inf and high[row, column] == math.inf, (row, column)


def test_the_shown_range_loss_pays_only_for_what_shows_wrong():
    frame = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    ranges = shown_range(frame, contrast_nats=6.0, tolerance=0.02)
    # scores relative to each row's sink (column 0): white far above, black far below, gray at
    # its level: nothing shows wrong, whatever each row's own offset
    right = torch.tensor([[0.0, 0.0, 0.0], [3.0, 9.0, 0.0], [-2.0, -2.0 + math.log(0.5), -20.0]])
    assert float(shown_range_loss(right, ranges)) == 0.0
    # the gray pixel 0.1 nats over its level, the white one 0.2 under its range: (0.01 + 0.04) / 3
    wrong = right.clone()
    wrong[2, 1] += 0.1
    wrong[1, 1] = 3.0 + math.log(0.98) - 0.2
    assert math.isclose(float(shown_range_loss(wrong, ranges)), 0.05 / 3, rel_tol=1e-4)
    # the sink's own score moves the whole row: the loss sees it in every pixel of that row
    darker_sink = right.clone()
    darker_sink[1, 0] += 0.5  # row 1's one pixel is now 0.5 nats under its sink: 0.5 too dark?
    assert float(shown_range_loss(darker_sink, ranges)) == 0.0  # no: white's range reaches far
    darker_sink[2, 0] += 0.5  # but row 2's gray pixel leaves its level
    assert float(shown_range_loss(darker_sink, ranges)) == pytest.approx(0.25 / 3)


def test_aimed_target_picks_the_target_of_each_render():
    frames = torch.rand(2, 1, 6, 6)
    ranges, expected = aimed_target(frames, "sink", 6.0), shown_range(frames, 6.0)
    assert isinstance(ranges, ShownRange)
    assert torch.equal(ranges.low, expected.low) and torch.equal(ranges.high, expected.high)
    assert ranges.shape == (2, 1, 7, 7)
    assert torch.equal(aimed_target(frames, "zscore", 6.0), picture_target(frames, 6.0))
    assert torch.equal(aimed_target(frames, "zscore", None), target_logits(frames))
    # fit_loss measures each against its own kind of target
    scores = torch.randn(2, 1, 7, 7)
    assert torch.equal(fit_loss(scores, ranges), shown_range_loss(scores, ranges))
    logits = target_logits(frames)
    assert torch.equal(
        fit_loss(scores[..., 1:, 1:], logits), logit_space_loss(scores[..., 1:, 1:], logits)
    )
