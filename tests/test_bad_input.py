"""Bad input, tried as a new user would: each mistake gets one error line that names the problem
and the fix (exit != 0, no traceback), and each unusual but valid input works.

CASES is the list of mistakes. They run the real scripts in this process (`in_process`, the
same code as `python script.py` without a fresh interpreter each time: starting one costs
seconds of torch import); the run of a video through every script, and a second optimize.py
beside a running one, use real subprocesses.
"""

import io
import json
import os
import pickle
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from badapple.storage import FramesDir, frame_numbers, frames_lock
from tests.conftest import TINY, save_checkpoint, save_unsupported_checkpoint
from tests.media import (
    make_audio_only,
    make_clip,
    make_text_file,
    make_variable_rate_clip,
    truncate,
)
from tests.scripts import FAST, FPS, REPO, SIZE, assert_ok, assert_user_error, run

pytestmark = pytest.mark.slow


def in_process(script: str, *args) -> subprocess.CompletedProcess:
    """Run a script's `__main__` here, with what the interpreter would print and return."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [script, *map(str, args)]
    code = 0
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as exit:  # as CPython: a message goes to stderr and exits 1
        if isinstance(exit.code, str):
            stderr.write(exit.code + "\n")
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
    finally:
        sys.argv = saved_argv
    # Any other exception propagates and fails the test with its traceback.
    return subprocess.CompletedProcess(sys.argv, code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "silhouettes.mp4", seconds=0.5)


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory, clip) -> Path:
    """A frames folder with 5 targets of 32x32, nothing optimised."""
    frames = tmp_path_factory.mktemp("downloaded") / "frames"
    flags = ["--frames-dir", frames, "--size", SIZE, "--fps", FPS]
    assert_ok(in_process("download.py", "--input", clip, *flags))
    return frames


@pytest.fixture(scope="module")
def optimized(tmp_path_factory, downloaded, tiny_checkpoint) -> Path:
    """The 5 frames of `downloaded`, optimised (a few steps): ready for assemble.py."""
    frames = tmp_path_factory.mktemp("optimized") / "frames"
    shutil.copytree(downloaded, frames)
    assert_ok(in_process("optimize.py", "--model", tiny_checkpoint, "--frames-dir", frames, *FAST))
    return frames


class World:
    """What a case builds its input from: this test's folder and the module's fixtures."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path):
        self.request, self.tmp = request, tmp

    def fixture(self, name: str) -> Path:
        return self.request.getfixturevalue(name)

    def frames_copy(self, name: str = "downloaded") -> FramesDir:
        """A copy of a module fixture's frames folder, for a case to damage."""
        shutil.copytree(self.fixture(name), self.tmp / "frames")
        return FramesDir(self.tmp / "frames")

    def optimize(self, *flags, frames: Path | None = None, model: Path | None = None) -> list:
        frames = frames or self.fixture("downloaded")
        model = model or self.fixture("tiny_checkpoint")
        return ["optimize.py", "--model", model, "--frames-dir", frames, *FAST, *flags]

    def download(self, video: Path) -> list:
        return ["download.py", "--input", video, "--frames-dir", self.tmp / "frames"]

    def a_file(self) -> Path:
        """A regular file, where the user's path needs a folder (root can write anywhere else)."""
        return make_text_file(self.tmp / "notes.txt")


def missing_middle_frame(w: World) -> list:
    folder = w.frames_copy()
    folder.target_png(3).unlink()
    return w.optimize(frames=folder.root)


def target_of_another_size(w: World) -> list:
    folder = w.frames_copy()
    Image.new("L", (16, 16)).save(folder.target_png(2))
    return w.optimize(frames=folder.root)


def damaged_target(w: World) -> list:
    folder = w.frames_copy()
    truncate(folder.target_png(4))
    return w.optimize(frames=folder.root)


def frames_as_long_as_the_positions(w: World) -> list:
    """32x32 frames on a GPT-2 with 32 positions: one row a position leaves none for the sink."""
    model = save_checkpoint(w.tmp / "short-gpt2", **{**TINY, "n_positions": SIZE})
    return w.optimize(model=model)


def unsupported_checkpoint(w: World) -> list:
    return w.optimize(model=save_unsupported_checkpoint(w.tmp / "t5"))


class _Trap:
    """Unpickling this creates the file it names: proof that a pickle was loaded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def pickle_checkpoint(w: World) -> list:
    """A GPT-2 directory whose only weights are a pickle (pytorch_model.bin): never loaded."""
    model = w.tmp / "pickled-gpt2"
    model.mkdir()
    config = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_positions": 64}
    (model / "config.json").write_text(json.dumps(config))
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(w.tmp / "pickle-was-loaded")))
    return w.optimize(model=model)


def damaged_checkpoint(damage: Callable[[bytes], bytes]) -> Callable[[World], list]:
    """A case: a tiny GPT-2 whose model.safetensors `damage` rewrote, given to optimize.py."""

    def case(w: World) -> list:
        model = save_checkpoint(w.tmp / "damaged-gpt2", **TINY)
        file = model / "model.safetensors"
        file.write_bytes(damage(file.read_bytes()))
        return w.optimize(model=model)

    return case


def empty_directory(w: World) -> list:
    (w.tmp / "empty").mkdir()
    return w.optimize(model=w.tmp / "empty")


# id -> (what builds the command line, the text the one error line must contain)
CASES: dict[str, tuple[Callable[[World], list], str]] = {
    "download: a text file named .mp4": (
        lambda w: w.download(make_text_file(w.tmp / "notes.mp4")),
        "is not a video ffmpeg can read (",
    ),
    "download: a truncated mp4 (index at the end)": (
        lambda w: w.download(truncate(make_clip(w.tmp / "cut.mp4"))),
        "is not a video ffmpeg can read (moov atom not found",
    ),
    "download: a truncated mp4 (index first)": (
        lambda w: w.download(truncate(make_clip(w.tmp / "cut.mp4", faststart=True))),
        "cut.mp4 is truncated (ffmpeg: ",
    ),
    "download: an audio-only file": (
        lambda w: w.download(make_audio_only(w.tmp / "song.m4a")),
        "is not a video ffmpeg can read (no video stream); pass a video file",
    ),
    "download: a file that is not there": (
        lambda w: w.download(w.tmp / "missing.mp4"),
        "missing.mp4 not found; pass the path of a video file",
    ),
    "download: --frames-dir inside a file": (
        lambda w: [*w.download(w.fixture("clip")), "--frames-dir", w.a_file() / "frames"],
        "notes.txt is a file, not a folder; pick a writable location",
    ),
    "optimize: before download": (
        lambda w: w.optimize(frames=w.tmp),
        "meta.json not found; run download.py first",
    ),
    "optimize: a frame missing in the middle": (
        missing_middle_frame,
        "lacks 1 of the 5 target frames wanted (first: frame_00003.png); rerun download.py",
    ),
    "optimize: targets of another size than --size": (
        target_of_another_size,
        "frame_00002.png is 16x16, not 32x32 (meta.json's size); rerun download.py --force",
    ),
    "optimize: a damaged target": (
        damaged_target,
        "frame_00004.png is damaged (Truncated File Read); rerun download.py --force",
    ),
    "optimize: --frames 50:10": (
        lambda w: w.optimize("--frames", "50:10"),
        "--frames 50:10: START is after END; did you mean --frames 10:50?",
    ),
    "optimize: --frames past the end": (
        lambda w: w.optimize("--frames", "1:500"),
        "--frames 1:500: the video has only 5 frames",
    ),
    "optimize: --head 25 on GPT-2 XL": (
        lambda w: w.optimize("--head", "25", model=w.fixture("xl_shaped_checkpoint")),
        "head 25 is out of range",
    ),
    "optimize: --layer 4 on a four-layer GPT-2": (
        lambda w: w.optimize("--layer", "4", model=w.fixture("tiny_deep_checkpoint")),
        "--layer 4 is out of range: ",  # then the path, "has 4 layers; pick one of 0..3"
    ),
    "optimize: --layer 1 on a one-layer GPT-2": (
        lambda w: w.optimize("--layer", "1"),
        "has 1 layer; pick one of 0..0",
    ),
    "optimize: a negative --layer": (
        lambda w: w.optimize("--layer", "-1"),
        "argument --layer: a layer is >= 0",
    ),
    "optimize: --model a T5 checkpoint": (
        unsupported_checkpoint,
        "is a t5 checkpoint, which is not supported",
    ),
    "optimize: --model an empty directory": (empty_directory, "has no config.json"),
    "optimize: --model with only pickle weights": (pickle_checkpoint, "no *.safetensors file"),
    "optimize: --model with a truncated model.safetensors": (
        damaged_checkpoint(lambda data: data[: len(data) // 2]),
        "model.safetensors is damaged (Error while deserializing header: incomplete metadata, file "
        "not fully covered); download the checkpoint again",
    ),
    "optimize: --model whose model.safetensors header is not JSON": (
        damaged_checkpoint(lambda data: data[:8] + b"[" + data[9:]),
        "model.safetensors is damaged (Error while deserializing header: invalid JSON in header",
    ),
    "optimize: --model whose model.safetensors header is longer than the file": (
        damaged_checkpoint(lambda data: (len(data) + 1000).to_bytes(8, "little") + data[8:]),
        "model.safetensors is damaged (Error while deserializing header: invalid header length); "
        "download the checkpoint again",
    ),
    "optimize: --chunk-size 0": (
        lambda w: w.optimize("--chunk-size", "0"),
        "--chunk-size must be at least 1",
    ),
    "optimize: negative --steps": (
        lambda w: w.optimize("--steps", "-3"),
        "--steps must be at least 1",
    ),
    "optimize: an unknown --render": (
        lambda w: w.optimize("--render", "pretty"),
        "argument --render: invalid choice: 'pretty'",
    ),
    "optimize: --contrast 0": (
        lambda w: w.optimize("--contrast", "0"),
        "--contrast 0: must be a positive number of nats up to 80, e.g. 6",
    ),
    "optimize: --contrast nan": (
        lambda w: w.optimize("--contrast", "nan"),
        "--contrast nan: must be a positive number of nats",
    ),
    "optimize: a negative --blur": (
        lambda w: w.optimize("--blur", "-1"),
        "--blur -1: must be 0 (none) to 64 pixels",
    ),
    "optimize: --contrast inf": (
        lambda w: w.optimize("--contrast", "inf"),
        "--contrast inf: must be a positive number of nats up to 80",
    ),
    "optimize: --blur inf": (
        lambda w: w.optimize("--blur", "inf"),
        "--blur inf: must be 0 (none) to 64 pixels",
    ),
    "optimize: --lr nan": (
        lambda w: w.optimize("--lr", "nan"),
        "need 0 <= --lr-min <= --lr and --lr > 0, finite numbers",
    ),
    "download: --fps nan": (
        lambda w: [*w.download(w.fixture("clip")), "--fps", "nan"],
        "--fps must be a positive finite number",
    ),
    "optimize: --head on a full frame": (
        lambda w: w.optimize("--full-frame", "--head", "3"),
        "--head 3 is for a gray half-frame run; a full-frame run plays on --heads, e.g. --heads",
    ),
    "optimize: an unknown --colormap": (
        lambda w: w.optimize("--colormap", "sunset"),
        "--colormap sunset: not a matplotlib colormap; try magma, gray or viridis",
    ),
    "optimize: no position left for the sink": (
        frames_as_long_as_the_positions,
        "frames of 32x32 need 33 positions under --render sink (one a row, plus the sink) but",
    ),
    "optimize: --heads on a gray half frame": (
        lambda w: w.optimize("--heads", "0,1"),
        "--heads 0,1 needs --full-frame or colour targets; a gray half-frame run plays on one",
    ),
    "optimize: one head for a gray full frame": (
        lambda w: w.optimize("--full-frame", "--heads", "3"),
        "--heads 3: a gray full-frame run plays on 2 different heads, e.g. --heads 0,1",
    ),
    "optimize: --device cuda without CUDA": (
        lambda w: w.optimize("--device", "cuda"),
        "--device cuda, but torch sees no CUDA GPU; use --device cpu",
    ),
    "assemble: before download": (
        lambda w: ["assemble.py", "--frames-dir", w.tmp],
        "meta.json not found; run download.py and optimize.py first",
    ),
    "assemble: before optimize": (
        lambda w: ["assemble.py", "--frames-dir", w.fixture("downloaded")],
        "no attention maps in",
    ),
    "assemble: --output inside a file": (
        lambda w: [
            "assemble.py",
            "--frames-dir",
            w.fixture("optimized"),
            "--output",
            w.a_file() / "video.mp4",
        ],
        "notes.txt is a file, not a folder; pick a writable location",
    ),
    "assemble: --output a folder": (
        lambda w: ["assemble.py", "--frames-dir", w.fixture("downloaded"), "--output", w.tmp],
        "is a folder; name the video file, e.g.",
    ),
}


FLAG_ERRORS = {
    "optimize: --chunk-size 0",
    "optimize: negative --steps",
    "optimize: an unknown --render",
    "optimize: --contrast 0",
    "optimize: --contrast nan",
    "optimize: a negative --blur",
    "optimize: --contrast inf",
    "optimize: --blur inf",
    "optimize: --lr nan",
    "download: --fps nan",
    "optimize: an unknown --colormap",
}


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_gets_one_line_naming_the_fix(case, request, tmp_path):
    if "--device cuda" in case and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    build, expected = CASES[case]
    script, *args = build(World(request, tmp_path))
    result = in_process(script, *args)
    assert_user_error(result, expected)
    if case in FLAG_ERRORS:  # argparse's exit code for a bad flag
        assert result.returncode == 2, case
    assert not (tmp_path / "pickle-was-loaded").exists()


def test_a_second_optimize_on_the_same_folder_is_refused(tmp_path, downloaded, tiny_checkpoint):
    frames = tmp_path / "frames"
    shutil.copytree(downloaded, frames)
    with frames_lock(frames):  # this process is the optimize.py already running
        refused = run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", frames, *FAST)
    assert_user_error(
        refused,
        f"another optimize.py (pid {os.getpid()}) is running on {frames}; wait for it "
        "or use another --frames-dir",
    )
    assert not (frames / "output").exists()


def test_a_download_into_a_folder_being_solved_is_refused(tmp_path, downloaded, clip):
    """download.py --force would rewrite the targets under the running optimize.py: it gets
    the same one line, and leaves the targets as they were."""
    frames = tmp_path / "frames"
    shutil.copytree(downloaded, frames)
    targets = {path.name: path.read_bytes() for path in (frames / "targets").iterdir()}
    flags = ["--frames-dir", frames, "--size", SIZE, "--fps", FPS, "--force"]
    with frames_lock(frames):  # this process is the optimize.py already running
        refused = run("download.py", "--input", clip, *flags)
    assert_user_error(
        refused,
        f"another optimize.py (pid {os.getpid()}) is running on {frames}; wait for it "
        "or use another --frames-dir",
    )
    assert {path.name: path.read_bytes() for path in (frames / "targets").iterdir()} == targets
    assert not (frames / "targets.part").exists()
    assert_ok(run("download.py", "--input", clip, *flags))  # released: it goes through


# Unusual videos that are fine: (how to make it, frames expected at FPS, a check of the targets)
VIDEOS: dict[str, tuple[Callable[[Path], Path], int]] = {
    "portrait": (lambda d: make_clip(d / "portrait.mp4", width=180, height=320, seconds=1), 10),
    "odd-sized": (
        lambda d: make_clip(d / "odd.mp4", width=161, height=97, pixel_format="yuv444p", seconds=1),
        10,
    ),
    "colour": (lambda d: make_clip(d / "colour.mp4", color=True, seconds=1), 10),
    "variable frame rate": (lambda d: make_variable_rate_clip(d / "vfr.mp4"), 20),
    "one frame": (lambda d: make_clip(d / "still.mp4", frames=1), 1),
}


@pytest.mark.parametrize("kind", VIDEOS)
@pytest.mark.filterwarnings("ignore:.*has no audio track")
def test_an_unusual_video_gives_square_full_range_gray_targets(kind, tmp_path):
    make, expected_count = VIDEOS[kind]
    frames = tmp_path / "frames"
    result = in_process(
        "download.py",
        "--input",
        make(tmp_path),
        "--frames-dir",
        frames,
        "--size",
        SIZE,
        "--fps",
        FPS,
    )
    assert_ok(result)
    folder = FramesDir(frames)
    count = json.loads(folder.meta.read_text())["frame_count"]
    assert abs(count - expected_count) <= 1
    assert frame_numbers(folder.targets) == list(range(1, count + 1))
    pixels = []
    for frame in range(1, count + 1):
        with Image.open(folder.target_png(frame)) as image:
            assert (image.mode, image.size) == ("L", (SIZE, SIZE))
            pixels.append(np.asarray(image))
    pixels = np.stack(pixels)  # [frames, SIZE, SIZE]
    assert pixels.min() == 0 and pixels.max() == 255  # black and white, full range
    if kind == "colour":  # the red square in the middle: luma 0.299 * 255 = 76
        assert 60 <= pixels[0, SIZE // 2 + 1, SIZE // 2 + 1] <= 95


def test_a_one_frame_video_in_a_path_with_spaces_and_accents_goes_through(
    tmp_path, tiny_checkpoint
):
    folder = tmp_path / "mes vidéos ü"
    folder.mkdir()
    video = make_clip(folder / "Bad Apple — 東方 ñ.mp4", frames=1)
    frames = folder / "frames à voir"
    assert_ok(run("download.py", "--input", video, "--frames-dir", frames, "--size", SIZE))
    assert_ok(run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", frames, *FAST))
    out = folder / "vidéo finale.mp4"
    assert_ok(run("assemble.py", "--frames-dir", frames, "--output", out))
    assert out.is_file() and frame_numbers(frames / "output") == [1]
