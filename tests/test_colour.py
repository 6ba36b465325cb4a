"""Colour: R, G and B on three heads of one forward pass (six in full frame), true tone.

A synthetic colour video with sound (saturated squares moving over a colour gradient) goes
through the four scripts; the heads are checked through transformers, the channel order with a
pure red square, and bad input gets one line.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.chunks import read_inputs_embeds
from badapple.head import attention_scores, attention_weights, load_head
from badapple.layout import head_pictures, layout_picture
from badapple.solvers import METHOD_DEFAULTS, solve_reduced
from badapple.storage import FramesDir, read_rgb_png, read_target_png
from badapple.targets import DEFAULT_CONTRAST_NATS, shown_range
from badapple.verify import model_through_layer, transformers_attention
from badapple.video import probe
from tests.media import make_colour_clip
from tests.scripts import FPS, SIZE, assert_ok, assert_user_error, run, run_here

pytestmark = pytest.mark.slow
COUNT = 10  # frames: 1 s at FPS
STEPS = ["--chunk-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("colour")
    clip = make_colour_clip(work / "colour.mp4", seconds=COUNT / FPS)
    frames = work / "frames"
    flags = ["--frames-dir", frames, "--size", SIZE, "--fps", FPS]
    assert_ok(run("download.py", "--input", clip, *flags, "--color"))
    return frames


@pytest.fixture(scope="module", params=["half", "full"])
def colour_run(request, tmp_path_factory, downloaded, tiny_sixteen_heads_checkpoint) -> Path:
    """optimize (default flags, --full-frame for full) -> assemble --side-by-side -> plot."""
    work = tmp_path_factory.mktemp(f"colour-{request.param}")
    frames = work / "frames"
    shutil.copytree(downloaded, frames)
    layout = ["--full-frame"] if request.param == "full" else []
    model = ["--model", tiny_sixteen_heads_checkpoint]
    flags = [*model, "--frames-dir", frames, *layout, *STEPS]
    assert_ok(run("optimize.py", *flags, "--verify", "2"))
    assert_ok(run("assemble.py", "--frames-dir", frames, "--output", work / "video.mp4"))
    side_by_side = ["--output", work / "both.mp4", "--side-by-side"]
    assert_ok(run("assemble.py", "--frames-dir", frames, *side_by_side))
    assert_ok(run("plot.py", "--frames-dir", frames, "--out-dir", work / "plots"))
    return work


def test_download_color_writes_rgb_targets(downloaded):
    folder = FramesDir(downloaded)
    assert json.loads(folder.meta.read_text())["channels"] == 3
    target = read_target_png(folder.target_png(1), 3)  # [3, T, T]
    assert target.shape == (3, SIZE, SIZE)
    # a colour frame: the channels differ (a gray one would have R = G = B everywhere)
    assert np.abs(target[0] - target[1]).mean() > 0.05


def test_a_colour_run_shows_the_colours_through_transformers(
    colour_run, tiny_sixteen_heads_checkpoint
):
    folder = FramesDir(colour_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    settings = metrics["settings"]
    full = settings["layout"] == "full"
    assert settings["channels"] == 3 and metrics["display"]["colormap"] is None
    assert settings["heads"] == ([0, 1, 2, 3, 4, 5] if full else [0, 1, 2])
    assert all(len(record["corr_per_channel"]) == 3 for record in metrics["frames"])
    # every head of a frame from one transformers forward of the saved embeddings, rendered as
    # the PNG is, against the colour target
    model = model_through_layer(open_checkpoint(str(tiny_sixteen_heads_checkpoint)))
    chunk = folder.embeddings / metrics["frames"][0]["embeddings"]
    frames, embeddings = read_inputs_embeds(chunk)  # [n, T+1, d]
    attention = transformers_attention(model, embeddings, tuple(settings["heads"])).numpy()
    for frame, maps in zip(frames.tolist(), attention, strict=True):
        picture = layout_picture(maps, settings["layout"], "sink", 0.0)  # [3, T, T]
        saved = read_rgb_png(folder.output_png(frame)).transpose(2, 0, 1) / 255  # [3, T, T]
        assert np.abs(picture - saved).max() <= 0.5 / 255 + 1e-6
        target = read_target_png(folder.target_png(frame), 3)
        shown = slice(None) if full else np.tri(SIZE, dtype=bool)
        # measured with the tiny 16-head checkpoint, frame by frame: corr 0.977-0.997, mae
        # 0.013-0.045; the means over the run's 10 frames: corr 0.971 (half), 0.977 (full),
        # mae 0.040, 0.039
        assert np.corrcoef(picture[:, shown].ravel(), target[:, shown].ravel())[0, 1] > 0.95
        assert np.abs(picture[:, shown] - target[:, shown]).mean() < 0.07
    assert metrics["means"]["corr"] > 0.96 and metrics["means"]["mae"] < 0.05


def test_a_colour_video_assembles_with_its_colour_target_beside_it(colour_run):
    both = probe(colour_run / "both.mp4")
    assert (both.width, both.height) == (2 * 4 * SIZE, 4 * SIZE)
    assert both.audio_codec == "aac"
    plots = {path.name for path in (colour_run / "plots").glob("*.png")}
    assert {"hero_frame.png", "target_vs_output.png", "pixel_metrics.png"} <= plots


def test_a_pure_red_square_appears_in_red_only_on_the_red_heads(tiny_sixteen_heads_checkpoint):
    size = 16
    frame = torch.zeros(1, 3, size, size)
    frame[0, 0, 9:14, 2:7] = 1.0  # red, below the diagonal
    frame[0, 0, 2:7, 9:14] = 1.0  # and its mirror above it, for the transposed heads
    checkpoint = open_checkpoint(str(tiny_sixteen_heads_checkpoint))
    heads = (4, 7, 1, 11, 2, 9)  # any six, in the order A_R, A_G, A_B, B_R, B_G, B_B
    weights = load_head(checkpoint, heads, size + 1)
    targets = shown_range(head_pictures(frame, "full"), DEFAULT_CONTRAST_NATS)
    solution = solve_reduced(weights, targets, [1], METHOD_DEFAULTS["reduced"], lambda loss: None)
    attention = attention_weights(attention_scores(solution.embeddings, weights))[0].numpy()
    picture = layout_picture(attention, "full", "sink", 0.0)  # [3, T, T]
    square = frame[0, 0].numpy() > 0.5
    assert picture[0][square].mean() > 0.9  # red there
    assert picture[1:][:, square].max() < 0.1  # green and blue: black there
    assert picture[:, ~square].max() < 0.1  # and black everywhere else
    # head A_R (4) carries the red frame's lower triangle, head B_R (11) its transpose's
    a_red = layout_picture(attention[[0]], "half", "sink", 0.0)[0]
    assert a_red[11, 4] > 0.9 and a_red[11, 10] < 0.1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--render", "zscore"], "colour targets need --render sink: --render zscore shows"),
        (["--colormap", "gray"], "--colormap gray is for gray runs"),
        (
            ["--heads", "0,1"],
            "a colour half-frame run plays on 3 different heads, e.g. --heads 0,1,2",
        ),
        (
            ["--full-frame", "--heads", "0,1,2"],
            "a colour full-frame run plays on 6 different heads",
        ),
        (["--heads", "0,1,16"], "head 16 is out of range"),
        (["--head", "5"], "--head 5 is for a gray half-frame run; a colour run plays on --heads"),
    ],
)
def test_bad_colour_flags_get_one_line(
    tmp_path, downloaded, tiny_sixteen_heads_checkpoint, flags, message
):
    frames = tmp_path / "frames"
    shutil.copytree(downloaded, frames)
    model = ["--model", tiny_sixteen_heads_checkpoint]
    result = run_here("optimize.py", *model, "--frames-dir", frames, *STEPS, *flags)
    assert_user_error(result, message)
    assert not (frames / "output").exists()  # nothing started, nothing lost


def test_switching_gray_and_colour_targets_needs_force(tmp_path, downloaded):
    frames = tmp_path / "frames"
    shutil.copytree(downloaded, frames)
    source = json.loads((frames / "meta.json").read_text())["source"]
    flags = ["--input", source, "--frames-dir", frames, "--size", SIZE, "--fps", FPS]
    before = sorted(p.read_bytes() for p in (frames / "targets").iterdir())
    result = run("download.py", *flags)  # gray, on the colour folder
    assert_user_error(result, "holds colour targets; rerun with --force to replace them with gray")
    assert sorted(p.read_bytes() for p in (frames / "targets").iterdir()) == before
    assert_ok(run("download.py", *flags, "--force"))
    assert json.loads((frames / "meta.json").read_text())["channels"] == 1
    # and the other way round: --color on the gray folder it now is
    before = sorted(p.read_bytes() for p in (frames / "targets").iterdir())
    result = run("download.py", *flags, "--color")
    assert_user_error(result, "holds gray targets; rerun with --force to replace them with colour")
    assert sorted(p.read_bytes() for p in (frames / "targets").iterdir()) == before
