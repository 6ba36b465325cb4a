import numpy as np
import pytest

from benchmarks.clips import CLIP_KINDS, benchmark_clips, make_clip

FRAMES = 16  # about a second of video at 15 fps


@pytest.mark.parametrize("size", [32, 64])
def test_every_kind_is_a_float32_clip_in_0_1(size):
    clips = benchmark_clips(FRAMES, size=size)
    assert tuple(clips) == CLIP_KINDS
    for clip in clips.values():
        assert clip.shape == (FRAMES, size, size)
        assert clip.dtype == np.float32
        assert clip.min() >= 0 and clip.max() <= 1


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_a_clip_depends_only_on_its_seed(kind):
    clip = make_clip(kind, 4, size=64, seed=1)
    assert np.array_equal(clip, make_clip(kind, 4, size=64, seed=1))
    assert not np.array_equal(clip, make_clip(kind, 4, size=64, seed=2))


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_consecutive_frames_are_close_but_the_clip_moves(kind):
    clip = make_clip(kind, FRAMES, size=64)  # [16, 64, 64]
    steps = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2))  # [15]
    assert steps.max() < 0.1
    assert np.abs(clip[-1] - clip[0]).mean() > 0.01


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_every_kind_has_dark_and_bright_pixels(kind):
    clip = make_clip(kind, FRAMES, size=64)
    assert (clip < 0.05).any() and (clip > 0.95).any()


@pytest.mark.parametrize("kind", ["silhouettes", "thin_limbs", "text", "specks", "inverted"])
def test_kinds_without_a_fade_are_pure_black_and_white(kind):
    assert set(np.unique(make_clip(kind, 4, size=64))) <= {0.0, 1.0}


def test_fades_end_on_black_and_white():
    to_black = make_clip("fade_to_black", FRAMES, size=64)
    to_white = make_clip("fade_to_white", FRAMES, size=64)
    assert to_black[0].max() == 1 and to_black[-1].max() < 0.02
    assert to_white[0].min() == 0 and to_white[-1].min() > 0.98
    # a fade passes through grays: the middle frame is neither black nor white
    middle = to_black[FRAMES // 2]
    assert ((middle > 0.1) & (middle < 0.9)).any()


def test_a_smaller_clip_is_the_same_picture_smaller():
    large = make_clip("silhouettes", 1, size=256)[0]  # [256, 256]
    small = make_clip("silhouettes", 1, size=64)[0]  # [64, 64]
    pooled = large.reshape(64, 4, 64, 4).mean(axis=(1, 3))  # [64, 64]
    assert np.abs(pooled - small).mean() < 0.05
    assert abs(pooled.mean() - small.mean()) < 0.02


def test_thin_limbs_has_one_pixel_wide_lines():
    frame = make_clip("thin_limbs", 1, size=256)[0]
    # a white pixel with black on both sides, across a row: a line 1 px wide
    lone = (frame[:, 1:-1] == 1) & (frame[:, :-2] == 0) & (frame[:, 2:] == 0)
    assert lone.sum() > 50


def test_an_unknown_kind_names_the_kinds():
    with pytest.raises(ValueError, match="silhouettes"):
        make_clip("waves", 4)
