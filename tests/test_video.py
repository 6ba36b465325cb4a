"""badapple.video on real clips that ffmpeg synthesises in a temporary folder."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badapple import video
from badapple.errors import UserError
from badapple.storage import FRAME_PATTERN, frame_numbers, write_png
from tests.media import make_audio_only, make_clip, make_text_file, streams

SIZE = 32  # frame side for extract_frames, small to keep the tests fast


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, 320x240 (4:3), 30 fps, H.264 + AAC."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("silent") / "silent.mp4", seconds=1, audio=False)


def read_frames(folder: Path) -> np.ndarray:
    """All frame PNGs of a folder as uint8, [frames, H, W]; asserts they are 8-bit gray."""
    frames = []
    for number in frame_numbers(folder):
        with Image.open(folder / (FRAME_PATTERN % number)) as image:
            assert image.mode == "L"
            frames.append(np.asarray(image))
    return np.stack(frames)


def extract(clip: Path, out_dir: Path, fit: str = "stretch", **trim) -> int:
    trim = {"start_seconds": None, "duration_seconds": None, **trim}
    return video.extract_frames(clip, out_dir, fps=15, size=SIZE, fit=fit, **trim)


def one_line_error(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_probe_reads_size_rate_duration_codecs(clip, silent_clip):
    info = video.probe(clip)
    assert (info.width, info.height, info.fps) == (320, 240, 30.0)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert video.probe(silent_clip).audio_codec is None


def test_extract_frames_writes_full_range_gray_squares(clip, tmp_path):
    count = extract(clip, tmp_path)
    assert count == pytest.approx(30, abs=1)  # 2 s at 15 fps
    assert frame_numbers(tmp_path) == list(range(1, count + 1))
    frames = read_frames(tmp_path)
    assert frames.shape == (count, SIZE, SIZE)
    # H.264 stores black/white as 16/235; the targets must still span 0-255
    assert frames.min() == 0
    assert frames.max() == 255


@pytest.mark.parametrize("fit", video.FITS)
def test_each_fit_gives_square_frames(clip, tmp_path, fit):
    extract(clip, tmp_path, fit)
    frames = read_frames(tmp_path)
    assert frames.shape[1:] == (SIZE, SIZE)
    assert frames.max() == 255
    if fit == "pad":  # 4:3 in a square: 32x24 picture, black bars of 4 rows above and below
        assert frames[:, :4].max() == 0
        assert frames[:, -4:].max() == 0


def test_start_and_duration_trim(clip, tmp_path):
    assert extract(clip, tmp_path, start_seconds=0.5, duration_seconds=1.0) == pytest.approx(
        15, abs=1
    )
    assert extract(clip, tmp_path, start_seconds=1.0) == pytest.approx(15, abs=1)


def test_extract_frames_replaces_old_frames(clip, tmp_path):
    write_png(tmp_path / (FRAME_PATTERN % 99), np.zeros((4, 4), np.uint8))
    count = extract(clip, tmp_path, duration_seconds=0.5)
    assert frame_numbers(tmp_path) == list(range(1, count + 1))


def test_extract_frames_past_the_end_is_an_error(clip, tmp_path):
    with pytest.raises(UserError, match="no frames") as error:
        extract(clip, tmp_path, start_seconds=10.0)
    one_line_error(error)


def test_unknown_fit_is_an_error(clip, tmp_path):
    with pytest.raises(UserError, match="stretch, crop, pad"):
        extract(clip, tmp_path, "zoom")


def test_extract_audio_copies_aac(clip, silent_clip, tmp_path):
    out = tmp_path / "audio.m4a.part"  # callers write to a temporary name
    assert video.extract_audio(clip, out, start_seconds=None, duration_seconds=None)
    description = streams(out)
    assert "Audio: aac" in description and "Video:" not in description
    assert not video.extract_audio(
        silent_clip, tmp_path / "none.m4a", start_seconds=None, duration_seconds=None
    )
    assert not (tmp_path / "none.m4a").exists()


def write_sequence(folder: Path, frames: int, size: int, channels: int) -> Path:
    """`frames` random PNGs, [size, size, channels] or gray when channels is 1."""
    rng = np.random.default_rng(0)
    shape = (size, size, channels) if channels > 1 else (size, size)
    for number in range(1, frames + 1):
        write_png(folder / (FRAME_PATTERN % number), rng.integers(0, 256, shape, np.uint8))
    return folder / FRAME_PATTERN


def test_encode_video_upscales_with_audio(tmp_path):
    pattern = write_sequence(tmp_path / "output", frames=15, size=16, channels=3)
    audio = make_audio_only(tmp_path / "audio.m4a")
    out = tmp_path / "video.mp4.part"  # callers write to a temporary name
    video.encode_video(pattern, out, fps=15, scale=4, audio=audio)
    info = video.probe(out)
    assert (info.video_codec, info.width, info.height, info.fps) == ("h264", 64, 64, 15.0)
    assert info.audio_codec == "aac"
    assert info.duration_seconds == pytest.approx(1.0, abs=0.1)


def test_encode_video_side_by_side_and_even_size(tmp_path):
    pattern = write_sequence(tmp_path / "output", frames=5, size=15, channels=3)
    targets = write_sequence(tmp_path / "targets", frames=5, size=15, channels=1)
    wav = make_audio_only(tmp_path / "tone.wav")  # PCM: re-encoded to AAC
    out = tmp_path / "video.mp4"
    video.encode_video(pattern, out, fps=15, scale=3, audio=wav, side_by_side_pattern=targets)
    info = video.probe(out)
    assert (info.width, info.height) == (90, 46)  # 2 x 45 wide; 45 padded to even
    assert info.audio_codec == "aac"


def test_encode_video_without_frames_carries_ffmpeg_stderr(tmp_path):
    with pytest.raises(UserError, match="ffmpeg: ") as error:
        video.encode_video(
            tmp_path / FRAME_PATTERN, tmp_path / "v.mp4", fps=15, scale=2, audio=None
        )
    one_line_error(error)


@pytest.mark.parametrize("kind", ["text", "truncated", "audio only", "missing"])
def test_probe_rejects_what_is_not_a_video(clip, tmp_path, kind):
    path = tmp_path / "input.mp4"
    if kind == "text":
        make_text_file(path)
    elif kind == "truncated":
        path.write_bytes(clip.read_bytes()[:1000])
    elif kind == "audio only":
        path = make_audio_only(tmp_path / "input.m4a")
    with pytest.raises(UserError) as error:
        video.probe(path)
    message = one_line_error(error)
    assert str(path) in message
    assert ("not found" if kind == "missing" else "not a video ffmpeg can read") in message


def test_ffmpeg_from_env_var_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("FFMPEG", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(UserError, match="FFMPEG="):
        video.ffmpeg_executable()


def test_ffmpeg_that_cannot_run_is_an_error(clip, monkeypatch, tmp_path):
    monkeypatch.setenv("FFMPEG", str(make_text_file(tmp_path / "ffmpeg")))  # not executable
    with pytest.raises(UserError, match="cannot run ffmpeg") as error:
        video.probe(clip)
    one_line_error(error)


def test_frame_rate_snaps_ntsc_rates():
    assert video._frame_rate("yuv420p, 1920x1080, 29.97 fps, 29.97 tbr") == pytest.approx(
        30000 / 1001
    )
    assert video._frame_rate("yuv420p, 1920x1080, 25 fps, 25 tbr") == 25.0
    assert video._rate(30000 / 1001) == "30000/1001"
