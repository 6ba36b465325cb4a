import numpy as np
import pytest

from fixtures.clips import (
    BLACK_ON_WHITE,
    CLIP_KINDS,
    CROSSFADE_FRAMES,
    DIP_FRAMES,
    FPS,
    SCENE_KINDS,
    TRANSITIONS,
    WHITE_ON_BLACK,
    benchmark_clips,
    dance_video,
    dance_video_cuts,
    dance_video_scenes,
    iter_dance_video,
    make_clip,
)

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


# --- dance_video: a long music-video clip with cuts and fades ---------------------------------


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return dance_video()  # the default: 330 frames of 256 x 256, seed 0 (a quarter of a second)


def _figure(frame: np.ndarray, polarity: str) -> np.ndarray:
    """The figures' pixels of a frame, whatever their colour."""
    return frame < 0.5 if polarity == BLACK_ON_WHITE else frame > 0.5


def _in_transition(index: int, scenes) -> bool:
    """Whether frame `index` is in a fade or cross-fade window (or the first scene's fade in)."""
    for number, scene in enumerate(scenes):
        local = index - scene.start
        if not 0 <= local < scene.frames:
            continue
        window = CROSSFADE_FRAMES if scene.transition == "crossfade" else DIP_FRAMES
        entering = scene.transition != "cut" and local < window
        following = scenes[number + 1].transition if number + 1 < len(scenes) else "cut"
        leaving = following.startswith("dip") and local >= scene.frames - DIP_FRAMES
        return entering or leaving
    raise AssertionError(f"frame {index} is in no scene")


def test_dance_video_is_22_seconds_of_float32_frames_in_0_1(video):
    assert video.shape == (330, 256, 256) and video.dtype == np.float32
    assert video.min() == 0 and video.max() == 1
    assert len(video) / FPS == 22  # at least 300 consecutive frames at 15 fps


def test_dance_video_depends_only_on_its_seed_and_a_longer_one_starts_with_it():
    clip = dance_video(60, size=32, seed=1)
    assert np.array_equal(clip, dance_video(60, size=32, seed=1))
    assert not np.array_equal(clip, dance_video(60, size=32, seed=2))
    assert np.array_equal(clip, dance_video(400, size=32, seed=1)[:60])  # past the first block
    frames = list(iter_dance_video(60, size=32, seed=1))
    assert np.array_equal(np.stack(frames), clip)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_kind_of_scene_and_transition_lasts_2_to_4_seconds(seed):
    scenes = dance_video_scenes(330, seed)
    assert [s.start for s in scenes] == [0] + [s.end for s in scenes[:-1]]  # back to back
    assert all(2 * FPS <= s.frames <= 4 * FPS for s in scenes)
    assert {s.kind for s in scenes} == set(SCENE_KINDS)
    assert {s.transition for s in scenes} == set(TRANSITIONS)
    assert scenes[0].transition == "fade_in"
    assert {s.polarity for s in scenes} == {BLACK_ON_WHITE, WHITE_ON_BLACK}
    cuts = dance_video_cuts(330, seed)
    assert cuts == [s.start for s in scenes if s.transition == "cut"] and len(cuts) >= 4
    into_white = [s for s in scenes if s.transition == "cut" and s.polarity == BLACK_ON_WHITE]
    assert len(into_white) >= 3
    # a bad-apple-length video keeps cutting: every block of 22 s has its cuts
    long_cuts = np.array(dance_video_cuts(3286, seed))
    assert len(long_cuts) >= 40 and np.diff(long_cuts).max() <= 12 * FPS


def test_hard_cuts_jump_from_black_to_white_backgrounds_in_one_frame(video):
    cuts = dance_video_cuts()
    means = video.mean(axis=(1, 2))
    jumps = [means[c] - means[c - 1] for c in cuts]
    changes = [np.abs(video[c] - video[c - 1]).mean() for c in cuts]
    assert min(changes) > 0.1  # a cut changes the picture, even between two white scenes
    assert sum(jump > 0.5 for jump in jumps) >= 2  # dark frame, then a white one
    assert sum(means[c] > 0.6 for c in cuts) >= 3  # cuts into white backgrounds
    assert any(jump < -0.5 for jump in jumps)  # and one into black
    # within a scene nothing jumps like that: only a cut does
    steps = np.abs(np.diff(means))
    assert steps[[c - 1 for c in cuts]].max() == steps.max()
    assert np.delete(steps, [c - 1 for c in cuts]).max() < 0.2


def test_fades_go_through_black_white_and_gray_and_the_rest_is_pure(video):
    scenes = dance_video_scenes()
    by_transition = {s.transition: s for s in scenes}
    assert video[0].max() == 0  # the video fades in from black
    assert video[by_transition["dip_to_black"].start - 1].max() == 0  # a black frame
    assert video[by_transition["dip_to_white"].start - 1].min() == 1  # a white frame
    gray = ((video > 0.02) & (video < 0.98)).mean(axis=(1, 2))  # [330] share of gray pixels
    fading = np.array([_in_transition(i, scenes) for i in range(len(video))])
    assert (gray[fading] > 0).sum() >= 30  # the fades are gray, frame after frame
    assert gray[~fading].max() == 0  # everything else is black and white
    crossfade = by_transition["crossfade"]
    middle = video[crossfade.start + CROSSFADE_FRAMES // 2]  # two scenes at once: 4 levels
    assert len(np.unique(middle)) >= 4
    dip = video[by_transition["dip_to_black"].start + DIP_FRAMES // 2]  # one scene, dimmed
    assert len(np.unique(dip)) == 2 and 0.2 < dip.max() < 0.9


def test_every_scene_has_one_pixel_detail(video):
    for scene in dance_video_scenes():
        frame = video[scene.start + scene.frames // 2]
        # a pixel unlike its two neighbours, which are alike: a line 1 px wide, across a row
        # or down a column (hair, fingers, sticks, ribbons, lamp posts)
        across = (frame[:, 1:-1] != frame[:, :-2]) & (frame[:, :-2] == frame[:, 2:])
        down = (frame[1:-1] != frame[:-2]) & (frame[:-2] == frame[2:])
        assert across.sum() + down.sum() > 60, scene


def test_dancers_travel_fast_and_the_camera_zooms_and_pans(video):
    scenes = {s.kind: s for s in dance_video_scenes()}  # the last of each kind
    steps = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2))
    assert np.median(steps) > 0.03  # a fast dance: more than the old clips' 0.02-0.03 a frame

    solo = scenes["solo"]
    shown = [_figure(video[i], solo.polarity) for i in (solo.start + 10, solo.end - 10)]
    centres = [np.nonzero(figure)[1].mean() for figure in shown]
    assert abs(centres[1] - centres[0]) / (solo.frames - 20) > 2  # px a frame

    zoom = scenes["zoom"]
    areas = [_figure(video[i], zoom.polarity).mean() for i in (zoom.start + 10, zoom.end - 10)]
    assert max(areas) / min(areas) > 1.5

    pan = scenes["pan"]
    # column profiles of the upper picture (heads, lamp posts), and how far each moved on
    profiles = [
        _figure(video[i], pan.polarity)[40:100].sum(axis=0).astype(float)
        for i in range(pan.start + 12, pan.end - 10)
    ]
    profiles = [profile - profile.mean() for profile in profiles]
    shifts = [_shift(a, b) for a, b in zip(profiles, profiles[1:], strict=False)]
    assert np.median(np.abs(shifts)) >= 3  # the whole picture slides several px a frame
    assert len(set(np.sign(shifts))) == 1  # one way


def _shift(before: np.ndarray, after: np.ndarray, most: int = 10) -> int:
    """The shift in px, within +-most, that best moves profile `before` onto `after`."""
    return max(range(-most, most + 1), key=lambda s: float((np.roll(before, s) * after).sum()))


def test_a_smaller_dance_video_is_the_same_picture_smaller(video):
    small = dance_video(330, size=64)
    pooled = video.reshape(330, 64, 4, 64, 4).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 0.06
    # 1 px lines stay 1 px wide when smaller (`_Canvas._width`): a quarter-size head of hair
    # is darker than the pooled one, and only that differs
    brightness = np.abs(pooled.mean(axis=(1, 2)) - small.mean(axis=(1, 2)))  # [330]
    assert brightness.mean() < 0.04 and brightness.max() < 0.15


def test_dance_video_refuses_an_empty_or_tiny_clip():
    with pytest.raises(ValueError, match="frames >= 1"):
        dance_video(0)
    with pytest.raises(ValueError, match="size >= 8"):
        dance_video(10, size=4)
