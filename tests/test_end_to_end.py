"""The four scripts run as a user runs them: subprocesses on a synthesised clip, a tiny GPT-2."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from badapple.errors import UserError
from badapple.pipeline import optimize
from badapple.storage import FramesDir, frame_numbers, read_embeddings, read_rgb_png
from badapple.video import probe
from tests.media import make_clip, make_text_file, streams

REPO = Path(__file__).resolve().parents[1]
SIZE, FPS, SECONDS = 32, 10, 2.0  # 20 frames of 32x32: small enough for a tiny GPT-2 (64 positions)
FAST = ["--steps", "16", "--chunk-size", "8", "--device", "cpu"]

pytestmark = pytest.mark.slow


def run(script: str, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no test may reach the network
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-2000:]


def assert_user_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit code != 0, no traceback, one error line matching `pattern`."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert pattern in error_lines[0], error_lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "silhouettes.mp4", seconds=SECONDS)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, clip, tiny_checkpoint) -> Path:
    """download -> optimize -> assemble -> plot, once; the tests below inspect what it left."""
    work = tmp_path_factory.mktemp("run")
    frames = work / "frames"
    assert_ok(
        run("download.py", "--input", clip, "--frames-dir", frames, "--size", SIZE, "--fps", FPS)
    )
    assert_ok(
        run(
            "optimize.py",
            "--model",
            tiny_checkpoint,
            "--frames-dir",
            frames,
            *FAST,
            "--verify",
            "3",
        )
    )
    assert_ok(run("assemble.py", "--frames-dir", frames, "--output", work / "video.mp4"))
    assert_ok(
        run(
            "assemble.py",
            "--frames-dir",
            frames,
            "--output",
            work / "both.mp4",
            "--side-by-side",
            "--scale",
            "2",
        )
    )
    assert_ok(run("plot.py", "--frames-dir", frames, "--out-dir", work / "plots"))
    return work


def test_download_writes_targets_audio_and_meta(pipeline_run):
    folder = FramesDir(pipeline_run / "frames")
    meta = json.loads(folder.meta.read_text())
    assert meta["size"] == SIZE and meta["fps"] == FPS
    assert meta["frame_count"] == SECONDS * FPS
    assert frame_numbers(folder.targets) == list(range(1, meta["frame_count"] + 1))
    assert "Audio: aac" in streams(folder.audio)


def test_optimize_writes_maps_metrics_and_gpt2_inputs(pipeline_run):
    folder = FramesDir(pipeline_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    count = int(SECONDS * FPS)
    assert frame_numbers(folder.output) == list(range(1, count + 1))
    assert [record["frame"] for record in metrics["frames"]] == list(range(1, count + 1))
    for record in metrics["frames"]:
        assert record["loss"] >= 0 and record["seconds"] > 0
        assert 0 <= record["mae"] <= 1 and 0 <= record["iou"] <= 1
        assert record["corr"] is None or -1 <= record["corr"] <= 1
    assert metrics["args"]["steps"] == 16 and metrics["device"] == "cpu"
    assert metrics["verify"]["max_abs_difference"] <= 1e-4 and len(metrics["verify"]["frames"]) == 3

    saved = {}
    for chunk in folder.embeddings.glob("*.safetensors"):
        frames, embeddings = read_embeddings(chunk)
        assert frames.dtype == torch.int64 and embeddings.dtype == torch.float32
        assert embeddings.shape[1:] == (SIZE, 64)
        saved.update(dict.fromkeys(frames.tolist(), chunk.name))
    assert sorted(saved) == list(range(1, count + 1))


def test_assemble_makes_an_upscaled_h264_video_with_sound(pipeline_run):
    info = probe(pipeline_run / "video.mp4")
    assert (info.width, info.height) == (4 * SIZE, 4 * SIZE)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration_seconds - SECONDS) < 0.3
    both = probe(pipeline_run / "both.mp4")
    assert (both.width, both.height) == (2 * 2 * SIZE, 2 * SIZE)


def test_plot_writes_the_figures(pipeline_run):
    plots = sorted(path.name for path in (pipeline_run / "plots").glob("*.png"))
    assert len(plots) >= 7 and "loss_timeline.png" in plots and "pixel_metrics.png" in plots


def test_a_stopped_run_resumes_where_it_left_off(tmp_path, clip, tiny_checkpoint):
    frames = tmp_path / "frames"
    assert_ok(
        run("download.py", "--input", clip, "--frames-dir", frames, "--size", SIZE, "--fps", FPS)
    )
    folder = FramesDir(frames)
    command = [
        sys.executable,
        str(REPO / "optimize.py"),
        "--model",
        str(tiny_checkpoint),
        "--frames-dir",
        str(frames),
        "--steps",
        "400",
        "--chunk-size",
        "4",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    deadline = time.monotonic() + 240
    while not folder.metrics.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C after the first chunk was saved
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130, stderr
    assert "resume" in stderr and "Traceback" not in stderr
    finished = len(json.loads(folder.metrics.read_text())["frames"])
    assert 4 <= finished < 20

    resumed = run(
        "optimize.py",
        "--model",
        tiny_checkpoint,
        "--frames-dir",
        frames,
        "--steps",
        "400",
        "--chunk-size",
        "4",
        "--device",
        "cpu",
    )
    assert_ok(resumed)
    assert f"{finished} done, {20 - finished} to do" in resumed.stdout
    metrics = json.loads(folder.metrics.read_text())
    assert [record["frame"] for record in metrics["frames"]] == list(range(1, 21))
    assert frame_numbers(folder.output) == list(range(1, 21))


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory, clip) -> Path:
    frames = tmp_path_factory.mktemp("downloaded") / "frames"
    assert_ok(
        run(
            "download.py",
            "--input",
            clip,
            "--frames-dir",
            frames,
            "--size",
            SIZE,
            "--fps",
            FPS,
            "--duration",
            "0.5",
        )
    )
    return frames


def test_download_errors(tmp_path):
    assert_user_error(
        run("download.py", "--input", tmp_path / "missing.mp4", "--frames-dir", tmp_path / "f"),
        "not found",
    )
    text = make_text_file(tmp_path / "notes.mp4")
    assert_user_error(
        run("download.py", "--input", text, "--frames-dir", tmp_path / "f"), "not a video"
    )


def test_optimize_and_assemble_before_download(tmp_path, tiny_checkpoint):
    assert_user_error(
        run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", tmp_path),
        "run download.py first",
    )
    assert_user_error(run("assemble.py", "--frames-dir", tmp_path), "run download.py")


def test_bad_models_and_heads(tmp_path, downloaded, tiny_checkpoint):
    assert_user_error(
        run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", downloaded, "--head", "4"),
        "head 4 is out of range",
    )
    assert_user_error(
        run("optimize.py", "--model", tmp_path, "--frames-dir", downloaded), "no config.json"
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert_user_error(
        run("optimize.py", "--model", tmp_path, "--frames-dir", downloaded), "not GPT-2"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(downloaded, tiny_checkpoint):
    assert_user_error(
        run(
            "optimize.py",
            "--model",
            tiny_checkpoint,
            "--frames-dir",
            downloaded,
            "--device",
            "cuda",
        ),
        "no CUDA GPU",
    )


def test_bad_frame_ranges_and_flags(downloaded, tiny_checkpoint):
    base = ["--model", tiny_checkpoint, "--frames-dir", downloaded]
    assert_user_error(run("optimize.py", *base, "--frames", "5:1"), "START <= END")
    assert_user_error(run("optimize.py", *base, "--frames", "1:500"), "has only 5 frames")
    for flags in (["--chunk-size", "0"], ["--steps", "-3"]):
        result = run("optimize.py", *base, *flags)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "must be at least 1" in result.stderr


def test_assemble_before_optimize(downloaded):
    assert_user_error(run("assemble.py", "--frames-dir", downloaded), "run optimize.py first")


def test_targets_of_another_size_and_missing_targets(tmp_path, downloaded, tiny_checkpoint):
    frames = tmp_path / "frames"
    subprocess.run(["cp", "-r", str(downloaded), str(frames)], check=True)
    folder = FramesDir(frames)
    from PIL import Image

    Image.new("L", (16, 16)).save(folder.target_png(2))
    assert_user_error(
        run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", frames, *FAST),
        "is 16x16, but meta.json says 32x32",
    )
    folder.target_png(3).unlink()
    assert_user_error(
        run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", frames, *FAST),
        "lacks 1 target frames (first: 3)",
    )


@pytest.fixture(scope="module")
def full_frame_run(tmp_path_factory, downloaded, tiny_eight_heads_checkpoint) -> Path:
    """optimize --full-frame -> assemble -> plot, on a copy of the downloaded frames."""
    work = tmp_path_factory.mktemp("full-frame")
    frames = work / "frames"
    subprocess.run(["cp", "-r", str(downloaded), str(frames)], check=True)
    model = tiny_eight_heads_checkpoint
    full_frame = ["--full-frame", "--heads", "2,5"]
    assert_ok(
        run(
            "optimize.py",
            "--model",
            model,
            "--frames-dir",
            frames,
            *full_frame,
            *FAST,
            "--verify",
            2,
        )
    )
    assert_ok(run("assemble.py", "--frames-dir", frames, "--output", work / "video.mp4"))
    assert_ok(run("plot.py", "--frames-dir", frames, "--out-dir", work / "plots"))
    return work


def test_a_full_frame_run_records_both_heads_and_fills_the_square(full_frame_run):
    folder = FramesDir(full_frame_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["layout"] == metrics["args"]["layout"] == "full"
    assert metrics["heads"] == metrics["args"]["heads"] == [2, 5]
    for record in metrics["frames"]:
        assert len(record["loss_per_head"]) == 2
        assert record["loss"] == pytest.approx(sum(record["loss_per_head"]) / 2, rel=1e-3)
    # one transformers forward per checked frame reproduces both heads
    assert metrics["verify"]["heads"] == [2, 5]
    assert metrics["verify"]["max_abs_difference"] <= 1e-4
    upper = torch.ones(SIZE, SIZE, dtype=torch.bool).triu(1).numpy()
    for frame in frame_numbers(folder.output):
        rgb = read_rgb_png(folder.output_png(frame))  # [T, T, 3]
        assert rgb[upper].std() > 0  # not the half frame's black triangle


def test_a_full_frame_video_assembles_with_audio_and_plots(full_frame_run):
    info = probe(full_frame_run / "video.mp4")
    assert (info.width, info.height) == (4 * SIZE, 4 * SIZE)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    plots = sorted(path.name for path in (full_frame_run / "plots").glob("*.png"))
    assert len(plots) >= 7 and "hero_frame.png" in plots


def test_a_full_frame_run_resumes_only_as_itself(full_frame_run, tiny_eight_heads_checkpoint):
    common = dict(model=str(tiny_eight_heads_checkpoint), frames_dir=str(full_frame_run / "frames"))
    with pytest.raises(UserError, match=r"full frame \(--full-frame\), not half frame"):
        optimize(**common, steps=16, device="cpu")
    with pytest.raises(UserError, match="--heads 2,5, not --heads 2,6"):
        optimize(**common, steps=16, device="cpu", full_frame=True, heads=(2, 6))
    with pytest.raises(UserError, match=r"head 8 is out of range.*0\.\.7"):
        optimize(**common, full_frame=True, heads=(2, 8))
