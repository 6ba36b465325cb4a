"""The four scripts run as a user runs them: subprocesses on a synthesised clip, a tiny GPT-2.

Bad input (wrong files, flags, models, folders) is tried in test_bad_input.py.
"""

import errno
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from badapple import storage
from badapple.checkpoint import open_checkpoint
from badapple.chunks import chunk_info, read_inputs_embeds
from badapple.errors import UserError, exit_on_error
from badapple.figures import ATLAS_FIGURE, LOSS_FIGURES, PIXEL_FIGURES
from badapple.metrics import picture_metrics
from badapple.optimize import optimize
from badapple.render import colorize, full_frame_sink_picture, sink_picture, square_sink_picture
from badapple.storage import (
    FramesDir,
    frame_numbers,
    read_gray_png,
    read_rgb_png,
)
from badapple.targets import shown_range, shown_range_loss
from badapple.verify import model_through_layer, transformers_attention
from badapple.video import probe
from tests.conftest import save_family_checkpoint
from tests.media import make_clip, streams
from tests.scripts import (
    FAST,
    FPS,
    RUN,
    SECONDS,
    SIZE,
    assert_ok,
    assert_user_error,
    run,
    start,
    warning_lines,
)

pytestmark = pytest.mark.slow
COUNT = int(SECONDS * FPS)  # frames in the clip (conftest's `clip`)


def test_download_writes_targets_audio_and_meta(pipeline_run):
    folder = FramesDir(pipeline_run / "frames")
    meta = json.loads(folder.meta.read_text())
    assert meta["size"] == SIZE and meta["fps"] == FPS
    assert meta["frame_count"] == SECONDS * FPS
    assert frame_numbers(folder.targets) == list(range(1, meta["frame_count"] + 1))
    assert "Audio: aac" in streams(folder.audio)


def test_optimize_writes_maps_metrics_and_gpt2_inputs(pipeline_run, tiny_checkpoint):
    folder = FramesDir(pipeline_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    count = int(SECONDS * FPS)
    assert frame_numbers(folder.output) == list(range(1, count + 1))
    assert [record["frame"] for record in metrics["frames"]] == list(range(1, count + 1))
    # every record and PNG is of its frame's saved embeddings: recomputed here from
    # transformers' attention on them, against the target
    model = model_through_layer(open_checkpoint(str(tiny_checkpoint)))
    saved = saved_embeddings(folder)
    for record in metrics["frames"]:
        frame = record["frame"]
        attention = transformers_attention(model, saved[frame][None], (0,))  # [1, 1, T+1, T+1]
        picture = sink_picture(attention[0, 0].numpy())
        target = read_gray_png(folder.target_png(frame))
        for name, value in picture_metrics(picture, target).items():
            assert record[name] == pytest.approx(value, abs=1e-6), (frame, name)
        png = read_rgb_png(folder.output_png(frame)).astype(int)
        assert np.abs(png - colorize(picture)).max() <= 1, frame  # magma, a rounding edge
        # the loss against the shown ranges: scores and log-attention differ by a row
        # constant, which the ranges (relative to each row's sink) do not see; above the
        # diagonal, where the log is -inf, nothing is shown
        ranges = shown_range(torch.from_numpy(target), metrics["settings"]["contrast"])
        loss = float(shown_range_loss(attention[0, 0].log().tril(), ranges))
        assert record["loss"] == pytest.approx(loss, rel=1e-3, abs=1e-7), frame
        assert record["seconds"] > 0
        assert record["start"] in ("warm", "cold", "cold again") and record["steps"] >= 0
    settings = metrics["settings"]
    assert settings["steps"] == 200 and settings["method"] == "reduced"  # --steps 200
    # the warm polish is warm.py's, not --steps' (the tiny head is a strong display: the long one)
    assert settings["warm_starts"]["steps"] == 750 and metrics["device"] == "cpu"
    # the first frame of a run of frames starts cold, the next ones from their predecessor
    assert metrics["frames"][0]["start"] == "cold" and metrics["frames"][1]["start"] == "warm"
    # true tone by default: a sink token in front of the 32 rows, no blur, magma
    assert (settings["render"], settings["tokens"], settings["contrast"]) == ("sink", SIZE + 1, 6.0)
    assert metrics["display"] == {"blur": 0.0, "colormap": "magma"}
    assert metrics["loss_kind"].startswith("sink")
    # each setting once: no copies beside "settings" and "display"
    assert not {"args", "render", "layout", "heads", "blur", "colormap"} & set(metrics)
    assert len(metrics["verify"]["frames"]) == 3

    assert sorted(saved) == list(range(1, count + 1))
    assert all(e.shape == (SIZE + 1, 64) for e in saved.values())  # the sink, then 32 rows
    # the reduced solver's exact compact form: 2·16 + 1 = 33 numbers a token, not d = 64
    with safe_open(str(next(folder.embeddings.glob("chunk_*.safetensors"))), "pt") as chunk:
        assert chunk.get_slice("coefficients").get_shape()[1:] == [SIZE + 1, 33]
        assert json.loads(chunk.metadata()["badapple"])["settings"] == metrics["settings"]


def test_the_saved_embeddings_show_the_video_through_transformers(pipeline_run, tiny_checkpoint):
    """The quality floor, measured as a user would: transformers' own GPT-2 on the saved
    inputs_embeds, its attention rendered in true tone, against the target frames."""
    folder = FramesDir(pipeline_run / "frames")
    model = model_through_layer(open_checkpoint(str(tiny_checkpoint)))
    correlations, errors = [], []
    for chunk in sorted(folder.embeddings.glob("*.safetensors")):
        frames, embeddings = read_inputs_embeds(chunk)  # [n, T+1, d]
        attention = transformers_attention(model, embeddings, (0,))  # [n, 1, T+1, T+1]
        for frame, maps in zip(frames.tolist(), attention.numpy(), strict=True):
            shown = sink_picture(maps[0])
            target = read_gray_png(folder.target_png(frame))
            scores = picture_metrics(shown, target)
            errors.append(scores["mae"])
            if scores["corr"] is not None:
                correlations.append(scores["corr"])
    # measured on this clip with the tiny checkpoint: corr 0.9999, mae 0.0030
    assert np.mean(correlations) > 0.98 and np.mean(errors) < 0.02, (
        np.mean(correlations),
        np.mean(errors),
    )


def test_verify_fails_on_a_png_its_embeddings_do_not_show(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    # a whole, readable PNG (so the frame counts as done) of another picture: the negative
    pixels = read_rgb_png(folder.output_png(7))
    Image.fromarray(255 - pixels).save(folder.output_png(7))
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]
    result = run("optimize.py", *flags, "--frames", "7:7", "--verify", "1")
    assert_user_error(result, "frame_00007.png differs from the rendering of its embeddings")
    assert "0 to do" in result.stdout  # nothing was solved again: verify judged the PNG


def test_the_originals_rendering_runs_end_to_end(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *FAST]
    assert_ok(run("optimize.py", *flags, "--render", "zscore", "--verify", "2"))
    metrics = json.loads(folder.metrics.read_text())
    settings = metrics["settings"]
    assert (settings["render"], settings["tokens"], metrics["display"]["blur"]) == (
        "zscore",
        SIZE,
        1.5,
    )
    assert metrics["loss_kind"].startswith("original")
    _, embeddings = read_inputs_embeds(folder.embeddings / metrics["frames"][0]["embeddings"])
    assert embeddings.shape[1:] == (SIZE, 64)  # no sink token
    assert_ok(run("assemble.py", "--frames-dir", folder.root, "--output", tmp_path / "z.mp4"))
    assert_ok(run("plot.py", "--frames-dir", folder.root, "--out-dir", tmp_path / "plots"))
    plots = sorted(path.name for path in (tmp_path / "plots").glob("*.png"))
    # the original's loss: its figures
    assert plots == sorted(
        PIXEL_FIGURES + LOSS_FIGURES + (ATLAS_FIGURE,)
    )  # the original's loss, its figures
    # and another render on the same folder is refused rather than mixed in
    result = run("optimize.py", *flags)
    assert_user_error(result, "holds a run with --render zscore, not --render sink (chunk_00001")


def test_assemble_makes_an_upscaled_h264_video_with_sound(pipeline_run):
    info = probe(pipeline_run / "video.mp4")
    assert (info.width, info.height) == (4 * SIZE, 4 * SIZE)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration_seconds - SECONDS) < 0.3
    both = probe(pipeline_run / "both.mp4")
    assert (both.width, both.height) == (2 * 2 * SIZE, 2 * SIZE)


def test_plot_writes_the_figures(pipeline_run):
    plots = sorted(path.name for path in (pipeline_run / "plots").glob("*.png"))
    # a true-tone run is judged by its pictures: the loss figures are the original's loss only
    assert plots == sorted((*PIXEL_FIGURES, ATLAS_FIGURE))


def test_the_original_method_runs_with_its_own_defaults(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    model = ["--model", tiny_checkpoint, "--device", "cpu"]
    result = run(
        "optimize.py",
        *model,
        "--frames-dir",
        folder.root,
        "--method",
        "adam",
        "--steps",
        "8",
        "--frames",
        "2:4",
        "--verify",
        "2",
    )
    assert_ok(result)
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["method"] == "adam" and metrics["settings"]["lr"] == 0.1
    assert metrics["settings"]["warm_starts"] is None  # the original starts every one at random
    assert {record["start"] for record in metrics["frames"]} == {"cold"}
    assert [record["frame"] for record in metrics["frames"]] == [2, 3, 4]
    # adam saves its embeddings whole: it has no compact form
    chunk = folder.embeddings / metrics["frames"][0]["embeddings"]
    with safe_open(str(chunk), "pt") as saved:
        assert set(saved.keys()) == {"frames", "embeddings", "target_digests"}


def fresh_copy(pipeline_run: Path, destination: Path, outputs: bool = False) -> FramesDir:
    """The downloaded frames of the module's run (and its outputs, with `outputs`), to work on."""
    source = FramesDir(pipeline_run / "frames")
    folder = FramesDir(destination)
    keep = (source.meta, source.audio, source.targets)
    if outputs:
        keep += (source.output, source.embeddings)
    for path in keep:
        if path.is_dir():
            shutil.copytree(path, destination / path.name)
        else:
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, destination / path.name)
    return folder


def saved_embeddings(folder: FramesDir) -> dict[int, torch.Tensor]:
    """Every frame's inputs_embeds [T, d] as the chunk files hold them, the newest file's."""
    saved = {}
    for chunk in sorted(folder.embeddings.glob("chunk_*.safetensors")):
        frames, embeddings = read_inputs_embeds(chunk)
        saved.update(zip(frames.tolist(), embeddings, strict=True))
    return saved


def assert_same_outputs(
    folder: FramesDir, reference: FramesDir, solved_again: frozenset[int] = frozenset()
) -> None:
    """The same embeddings (to 1e-6), pictures and figures as `reference`, every frame; frames
    `solved_again` from another start (their predecessor's, now on disk) are as good instead."""
    ours, theirs = saved_embeddings(folder), saved_embeddings(reference)
    assert sorted(ours) == sorted(theirs) == list(range(1, COUNT + 1))
    worst = max(float((ours[f] - theirs[f]).abs().max()) for f in ours if f not in solved_again)
    assert worst <= 1e-6, worst
    assert frame_numbers(folder.output) == list(range(1, COUNT + 1))
    records = json.loads(folder.metrics.read_text())["frames"]
    reference_records = json.loads(reference.metrics.read_text())["frames"]
    assert [r["frame"] for r in records] == [r["frame"] for r in reference_records]
    for record, reference_record in zip(records, reference_records, strict=True):
        if record["frame"] in solved_again:
            assert record["mae"] <= reference_record["mae"] + 0.01
            continue
        for name in ("loss", "mae", "iou", "corr"):
            assert record[name] == pytest.approx(reference_record[name], abs=1e-5), name
        # how it was solved, too: from the chunk file where a stop left no record
        assert (record["start"], record["steps"]) == (
            reference_record["start"],
            reference_record["steps"],
        ), record["frame"]
    for frame in sorted(set(range(1, COUNT + 1)) - solved_again):
        difference = read_rgb_png(folder.output_png(frame)).astype(int) - read_rgb_png(
            reference.output_png(frame)
        )
        assert np.abs(difference).max() <= 1, frame  # a rounding edge at most
    assert not list(folder.root.rglob("*.part")), "a temporary file was left behind"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_a_stopped_run_resumes_to_the_same_result(tmp_path, pipeline_run, tiny_checkpoint, stop):
    """Ctrl-C, kill and kill -9 after the first chunk; the rerun finishes only what is missing
    and ends like the module's uninterrupted run of the same settings."""
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]
    process = start("optimize.py", *flags)
    # Stopped as soon as the first chunk file is there, so that however fast the machine the
    # signal comes before the run's end; SIGCONT then lets it arrive.
    first_chunk = folder.embeddings / "chunk_00001.safetensors"
    deadline = time.monotonic() + 120
    while not first_chunk.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGSTOP)
    process.send_signal(stop)
    process.send_signal(signal.SIGCONT)
    stderr = process.communicate(timeout=60)[1]
    if stop == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        # the bar was closed before the message: it is the last line, on a line of its own
        assert stderr.rstrip().splitlines()[-1] == (
            "optimize.py: interrupted; finished work is saved, run the same command to resume"
        )
    finished = sum(len(chunk_info(path).frames) for path in folder.embeddings.glob("chunk_*"))
    assert 4 <= finished < COUNT

    (folder.output / "frame_00099.png.part").write_bytes(b"half")  # as a kill mid-write leaves
    resumed = run("optimize.py", *flags)  # a killed run's lock does not stop it
    assert_ok(resumed)
    assert f"{finished} done, {COUNT - finished} to do" in resumed.stdout
    assert_same_outputs(folder, FramesDir(pipeline_run / "frames"))


def test_damaged_files_are_reported_and_recomputed(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    records = json.loads(folder.metrics.read_text())["frames"]
    chunk = folder.embeddings / records[0]["embeddings"]  # frames 1, 6, 11, 16
    solved_again = frozenset(chunk_info(chunk).frames)
    chunk.write_bytes(chunk.read_bytes()[:-100])  # a chunk cut short
    png = folder.output_png(10)
    data = bytearray(png.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # a PNG with a zeroed half
    png.write_bytes(data)
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]

    rerun = run("optimize.py", *flags)
    assert_ok(rerun)
    # the chunk's 4 frames are solved again; the PNG is drawn again from its embeddings
    assert f"{COUNT - 4} done, 4 to do in chunks of 4; 1 solved frames to render again" in (
        rerun.stdout
    )
    warnings = warning_lines(rerun)
    assert any(str(chunk) in line and "damaged" in line for line in warnings), rerun.stderr
    assert any(str(png) in line and "damaged" in line for line in warnings), rerun.stderr
    assert_same_outputs(folder, FramesDir(pipeline_run / "frames"), solved_again)

    folder.metrics.write_text('{"frames": [{"frame": 1, ')  # metrics.json cut short
    rerun = run("optimize.py", *flags)
    assert_ok(rerun)
    # nothing to solve: every picture and figure comes back from the chunk files
    assert f"{COUNT} done, 0 to do in chunks of 4; {COUNT} solved frames to render" in (
        rerun.stdout
    )
    assert any("metrics.json is damaged" in line for line in warning_lines(rerun)), rerun.stderr
    assert folder.metrics.with_name("metrics.json.damaged").exists()  # kept, not deleted
    assert_same_outputs(folder, FramesDir(pipeline_run / "frames"), solved_again)


def test_another_colormap_or_blur_is_rendered_again_not_solved_again(
    tmp_path, pipeline_run, tiny_checkpoint
):
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    chunks = {path.name: path.read_bytes() for path in folder.embeddings.iterdir()}
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]
    result = run("optimize.py", *flags, "--colormap", "gray", "--blur", "0.5")
    assert_ok(result)
    assert f"{COUNT} done, 0 to do in chunks of 4; {COUNT} solved frames to render again" in (
        result.stdout
    )
    assert {path.name: path.read_bytes() for path in folder.embeddings.iterdir()} == chunks
    for frame in (1, COUNT):  # drawn from the same embeddings, now blurred and in gray
        pixels = read_rgb_png(folder.output_png(frame))
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
        target = read_gray_png(folder.target_png(frame))
        assert (
            np.corrcoef(pixels[..., 0][np.tri(SIZE, dtype=bool)], target[np.tri(SIZE, dtype=bool)])[
                0, 1
            ]
            > 0.9
        )
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["display"] == {"blur": 0.5, "colormap": "gray"}
    # the same settings again: nothing to solve, nothing to draw
    again = run("optimize.py", *flags, "--colormap", "gray", "--blur", "0.5")
    assert_ok(again)
    assert f"{COUNT} done, 0 to do in chunks of 4\n" in again.stdout


def test_a_stopped_rerender_leaves_no_picture_drawn_the_other_way(
    tmp_path, pipeline_run, tiny_checkpoint, monkeypatch
):
    import badapple.optimize as stage

    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    common = dict(model=str(tiny_checkpoint), frames_dir=str(folder.root), device="cpu")
    real_write, written = stage.write_png, []

    def stopped_after_five(path, pixels):
        if len(written) == 5:
            raise KeyboardInterrupt  # Ctrl-C while the gray pictures are drawn
        written.append(path)
        real_write(path, pixels)

    monkeypatch.setattr(stage, "write_png", stopped_after_five)
    with pytest.raises(KeyboardInterrupt):
        optimize(**common, steps=200, chunk_size=4, colormap="gray")
    monkeypatch.setattr(stage, "write_png", real_write)
    # back to magma: the five gray pictures must be drawn again, as every other one
    metrics = optimize(**common, steps=200, chunk_size=4)
    assert len(metrics["frames"]) == COUNT
    for frame in range(1, COUNT + 1):
        pixels = read_rgb_png(folder.output_png(frame))
        assert not (pixels[..., 0] == pixels[..., 2]).all(), frame  # magma, not gray
    assert_same_outputs(folder, FramesDir(pipeline_run / "frames"))


def test_another_video_in_the_folder_is_another_run(tmp_path, pipeline_run, tiny_checkpoint, clip):
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    frames_flags = ["--frames-dir", folder.root, "--size", SIZE]
    assert_ok(run("download.py", "--input", clip, *frames_flags, "--fps", 5))  # other targets
    result = run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN)
    assert_user_error(result, "holds a run with targets from")
    assert len(saved_embeddings(folder)) == COUNT  # the old run's, still there


def shows_its_target(folder: FramesDir, frame: int, png: np.ndarray | None = None) -> float:
    """How far a half-frame PNG (magma) is from its frame's target now, in 8-bit levels: the
    mean over the lower triangle (what a causal head shows) of |PNG - the target in magma|."""
    png = read_rgb_png(folder.output_png(frame)) if png is None else png
    target = read_gray_png(folder.target_png(frame))
    shown = np.tri(SIZE, dtype=bool)
    return float(np.abs(png.astype(int) - colorize(target).astype(int))[shown].mean())


def chunk_of_each_frame(folder: FramesDir) -> dict[int, str]:
    return {r["frame"]: r["embeddings"] for r in json.loads(folder.metrics.read_text())["frames"]}


def test_a_target_edited_by_hand_is_solved_again(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    before, old_png = chunk_of_each_frame(folder), read_rgb_png(folder.output_png(7))
    negative = np.round((1 - read_gray_png(folder.target_png(7))) * 255).astype(np.uint8)
    Image.fromarray(negative).save(folder.target_png(7))  # the same size, another picture
    assert shows_its_target(folder, 7, old_png) > 50  # the old picture is not the new target
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]

    result = run("optimize.py", *flags)
    assert_ok(result)
    assert (
        "1 frames' targets changed since they were solved (first: frame 7); solving them again"
        in result.stdout
    )
    assert f"{COUNT - 1} done, 1 to do in chunks of 4\n" in result.stdout
    after = chunk_of_each_frame(folder)
    assert {frame for frame in after if after[frame] != before[frame]} == {7}
    assert shows_its_target(folder, 7) < 5
    ours, theirs = saved_embeddings(folder), saved_embeddings(FramesDir(pipeline_run / "frames"))
    assert all(torch.equal(ours[f], theirs[f]) for f in ours if f != 7)  # the rest untouched
    again = run("optimize.py", *flags)
    assert_ok(again)
    assert f"{COUNT} done, 0 to do in chunks of 4\n" in again.stdout


def test_another_video_of_the_same_length_downloaded_again_is_solved_again(
    tmp_path, clip, tiny_checkpoint
):
    """download.py --force of another video at the same path: meta.json says what it said
    (source, fps, frame count), the targets are others; optimize.py solves what changed."""
    video, folder = tmp_path / "video.mp4", FramesDir(tmp_path / "frames")
    shutil.copy(clip, video)
    download = ["download.py", "--input", video, "--frames-dir", folder.root, "--size", SIZE]
    assert_ok(run(*download, "--fps", FPS))
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN]
    assert_ok(run("optimize.py", *flags))
    old_targets = {f: read_gray_png(folder.target_png(f)) for f in range(1, COUNT + 1)}
    before = chunk_of_each_frame(folder)

    make_clip(video, seconds=SECONDS, width=180, height=320)  # portrait: other pictures
    assert_ok(run(*download, "--fps", FPS, "--force"))
    changed = sorted(
        f
        for f in range(1, COUNT + 1)
        if not np.array_equal(old_targets[f], read_gray_png(folder.target_png(f)))
    )
    assert changed  # the test's premise: the targets are others
    result = run("optimize.py", *flags)
    assert_ok(result)
    assert (
        f"{len(changed)} frames' targets changed since they were solved (first: frame "
        f"{changed[0]})" in result.stdout
    )
    assert f"{COUNT - len(changed)} done, {len(changed)} to do" in result.stdout
    after = chunk_of_each_frame(folder)
    assert sorted(frame for frame in after if after[frame] != before[frame]) == changed
    for frame in changed:
        assert shows_its_target(folder, frame) < 5, frame


def test_chunks_from_before_target_digests_are_trusted(tmp_path, pipeline_run, tiny_checkpoint):
    """A chunk file written before target digests were kept says nothing of its targets: its
    frames are kept as before, not solved again, even where a target changed."""
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    for chunk in folder.embeddings.glob("chunk_*.safetensors"):
        with safe_open(str(chunk), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            metadata = handle.metadata()
        del tensors["target_digests"]
        save_file(tensors, str(chunk), metadata=metadata)
    Image.new("L", (SIZE, SIZE), 255).save(folder.target_png(7))  # edited after it was solved
    result = run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN)
    assert_ok(result)
    assert "changed since" not in result.stdout
    assert f"{COUNT} done, 0 to do in chunks of 4\n" in result.stdout


def test_verify_fails_when_transformers_disagrees(
    tmp_path, pipeline_run, tiny_checkpoint, monkeypatch
):
    import badapple.verify

    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    real = badapple.verify.transformers_attention
    monkeypatch.setattr(
        badapple.verify,
        "transformers_attention",
        lambda *args: real(*args).roll(1, dims=-1),  # a forward that is not ours
    )
    with pytest.raises(UserError, match="verification failed: transformers' attention differs"):
        optimize(
            model=str(tiny_checkpoint), frames_dir=str(folder.root), steps=200, chunk_size=4,
            device="cpu", verify=2,
        )  # fmt: skip


def test_embeddings_of_an_older_version_are_not_mixed_in(tmp_path, pipeline_run, tiny_checkpoint):
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    folder.embeddings.mkdir()
    old = folder.embeddings / "frames_00001-00004.safetensors"  # no settings recorded
    save_file({"frames": torch.tensor([1, 2, 3, 4]), "embeddings": torch.zeros(4, SIZE, 64)}, old)
    flags = ["--model", tiny_checkpoint, "--frames-dir", folder.root, *FAST]
    result = run("optimize.py", *flags)
    assert_user_error(result, "holds embeddings from an older optimize.py (frames_00001-00004")
    assert old.exists()  # nothing lost
    assert_ok(run("optimize.py", *flags, "--force"))
    assert not old.exists() and len(saved_embeddings(folder)) == COUNT


def test_a_full_disk_stops_with_one_line_and_keeps_finished_frames(
    tmp_path, pipeline_run, tiny_checkpoint, monkeypatch
):
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    real_save, saved = Image.Image.save, []

    def save_until_the_disk_fills(image, path, *args, **kwargs):
        if len(saved) == 6:  # the 7th PNG, in the second chunk: half written, then ENOSPC
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n half")
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(path)
        return real_save(image, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_the_disk_fills)
    with pytest.raises(SystemExit) as stopped, exit_on_error("optimize.py"):
        optimize(
            model=str(tiny_checkpoint),
            frames_dir=str(folder.root),
            method="adam",  # consecutive chunks: frames 1-4, then 5-8
            steps=2,
            chunk_size=4,
            device="cpu",
        )
    message = str(stopped.value.code)
    assert message == (
        f"optimize.py: error: the disk is full ({folder.output_png(7)}); "
        "free some space and run the same command again to resume"
    )
    metrics = json.loads(folder.metrics.read_text())  # the first chunk's, intact
    assert [record["frame"] for record in metrics["frames"]] == [1, 2, 3, 4]
    assert frame_numbers(folder.output) == [1, 2, 3, 4, 5, 6]  # no half frame_00007.png
    assert storage.png_problem(folder.output_png(4), SIZE) is None
    frames, _ = read_inputs_embeds(folder.embeddings / metrics["frames"][0]["embeddings"])
    assert frames.tolist() == [1, 2, 3, 4]
    assert not list(folder.root.rglob("*.part"))
    assert len(list(folder.embeddings.glob("chunk_*.safetensors"))) == 2  # 5-8 solved, too

    monkeypatch.setattr(Image.Image, "save", real_save)  # space freed: the same call resumes
    optimize(
        model=str(tiny_checkpoint),
        frames_dir=str(folder.root),
        method="adam",
        steps=2,
        chunk_size=4,
        device="cpu",
    )
    assert frame_numbers(folder.output) == list(range(1, COUNT + 1))


@pytest.fixture(scope="module")
def full_frame_run(tmp_path_factory, pipeline_run, tiny_eight_heads_checkpoint) -> Path:
    """optimize --full-frame -> assemble -> plot, on a copy of the downloaded frames."""
    work = tmp_path_factory.mktemp("full-frame")
    frames = fresh_copy(pipeline_run, work / "frames").root
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


def test_a_full_frame_run_records_both_heads_and_fills_the_square(
    full_frame_run, tiny_eight_heads_checkpoint
):
    folder = FramesDir(full_frame_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["layout"] == "full"
    assert metrics["settings"]["heads"] == [2, 5]
    for record in metrics["frames"]:
        assert len(record["loss_per_head"]) == 2
        assert record["loss"] == pytest.approx(sum(record["loss_per_head"]) / 2, rel=1e-3)
    # one transformers forward of a frame's saved embeddings shows both heads' maps: stitched
    # (A below the diagonal, B transposed above), they are the PNG (4 steps: no quality here)
    model = model_through_layer(open_checkpoint(str(tiny_eight_heads_checkpoint)))
    embeddings = saved_embeddings(folder)
    for frame in (1, COUNT):
        attention = transformers_attention(model, embeddings[frame][None], (2, 5))[0].numpy()
        picture = full_frame_sink_picture(attention[0], attention[1])  # [T, T]
        png = read_rgb_png(folder.output_png(frame)).astype(int)
        assert np.abs(png - colorize(picture)).max() <= 1
    upper = torch.ones(SIZE, SIZE, dtype=torch.bool).triu(1).numpy()
    for frame in frame_numbers(folder.output):
        rgb = read_rgb_png(folder.output_png(frame))  # [T, T, 3]
        assert rgb[upper].std() > 0  # not the half frame's black triangle


def test_a_full_frame_video_assembles_with_audio_and_plots(full_frame_run):
    info = probe(full_frame_run / "video.mp4")
    assert (info.width, info.height) == (4 * SIZE, 4 * SIZE)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    plots = sorted(path.name for path in (full_frame_run / "plots").glob("*.png"))
    assert plots == sorted((*PIXEL_FIGURES, ATLAS_FIGURE))


def test_a_full_frame_run_resumes_only_as_itself(full_frame_run, tiny_eight_heads_checkpoint):
    common = dict(model=str(tiny_eight_heads_checkpoint), frames_dir=str(full_frame_run / "frames"))
    with pytest.raises(UserError, match=r"full frame \(--full-frame\), not half frame"):
        optimize(**common, steps=16, device="cpu")
    with pytest.raises(UserError, match="--heads 2,5, not --heads 2,6"):
        optimize(**common, steps=16, device="cpu", full_frame=True, heads=(2, 6))
    with pytest.raises(UserError, match=r"head 8 is out of range.*0\.\.7"):
        optimize(**common, full_frame=True, heads=(2, 8))


# --- a deeper layer (--layer) --------------------------------------------------------------


def run_the_rest(pipeline_run: Path, work: Path, model: Path, *flags) -> FramesDir:
    """optimize.py (RUN and `flags`), assemble.py and plot.py on `model`, in a copy of the
    module run's downloaded frames under `work`: work/video.mp4, work/plots/."""
    folder = fresh_copy(pipeline_run, work / "frames")
    common = ["--model", model, "--frames-dir", folder.root]
    assert_ok(run("optimize.py", *common, *RUN, *flags))
    assert_ok(run("assemble.py", "--frames-dir", folder.root, "--output", work / "video.mp4"))
    assert_ok(run("plot.py", "--frames-dir", folder.root, "--out-dir", work / "plots"))
    return folder


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory, pipeline_run, tiny_deep_checkpoint) -> Path:
    """The four scripts on layer 2 of a four-layer GPT-2 whose blocks move the stream a lot."""
    work = tmp_path_factory.mktemp("deep")
    model_flags = ["--layer", "2", "--head", "5", "--verify", "3"]
    run_the_rest(pipeline_run, work, tiny_deep_checkpoint, *model_flags)
    return work


def test_a_deeper_layer_plays_the_video_through_transformers(deep_run, tiny_deep_checkpoint):
    """Layer 2's attention, by transformers on the saved inputs_embeds (blocks 0 and 1 in
    between), rendered in true tone: the video, as well as layer 0 plays it."""
    folder = FramesDir(deep_run / "frames")
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["layer"] == 2 and metrics["verify"]["layer"] == 2
    assert metrics["verify"]["max_abs_difference"] < 1e-4
    model = model_through_layer(open_checkpoint(str(tiny_deep_checkpoint)), 2)
    errors = []
    for chunk in sorted(folder.embeddings.glob("*.safetensors")):
        assert chunk_info(chunk).settings == metrics["settings"]
        frames, embeddings = read_inputs_embeds(chunk)  # [n, T+1, d], stored whole
        attention = transformers_attention(model, embeddings, (5,), layer=2)
        for frame, maps in zip(frames.tolist(), attention.numpy(), strict=True):
            scores = picture_metrics(sink_picture(maps[0]), read_gray_png(folder.target_png(frame)))
            errors.append(scores["mae"])
    assert len(errors) == COUNT and np.mean(errors) < 0.02, np.mean(errors)
    for record in metrics["frames"]:  # every frame reached the layer to float precision
        assert record["reach_error"] <= 2e-6 and record["reach_steps"] >= 2
    assert (deep_run / "video.mp4").is_file()
    assert {path.name for path in (deep_run / "plots").iterdir()} >= {"hero_frame.png"}


def test_a_deeper_layer_is_another_run(deep_run, tmp_path, tiny_deep_checkpoint):
    folder = FramesDir(tmp_path / "frames")
    shutil.copytree(deep_run / "frames", folder.root)
    flags = ["--model", tiny_deep_checkpoint, "--frames-dir", folder.root, *RUN, "--head", "5"]
    assert_user_error(run("optimize.py", *flags), "holds a run with --layer 2, not --layer 0")
    resumed = run("optimize.py", *flags, "--layer", "2")
    assert_ok(resumed)
    assert f"{COUNT} done, 0 to do" in resumed.stdout


def test_chunks_from_before_layers_existed_are_gpt2_layer_0s(
    tmp_path, pipeline_run, tiny_checkpoint
):
    """A chunk file written before --layer and other families records neither: it played
    layer 0 of a GPT-2, and a run of today keeps its frames rather than solving them again."""
    folder = fresh_copy(pipeline_run, tmp_path / "frames", outputs=True)
    for chunk in folder.embeddings.glob("chunk_*.safetensors"):
        with safe_open(str(chunk), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            record = json.loads(handle.metadata()["badapple"])
        del record["settings"]["layer"], record["settings"]["model_type"]
        save_file(tensors, str(chunk), metadata={"badapple": json.dumps(record)})
    result = run("optimize.py", "--model", tiny_checkpoint, "--frames-dir", folder.root, *RUN)
    assert_ok(result)
    assert f"{COUNT} done, 0 to do" in result.stdout


# --- another family ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_type, base_model",
    [
        ("llama", "LlamaModel"),
        # a norm on each head's query and key after the projection
        ("qwen3", "Qwen3Model"),
        ("gemma3_text", "Gemma3TextModel"),  # and its layer 0 a local one, theta 10k
    ],
)
def test_the_four_scripts_play_on_a_llama(tmp_path, pipeline_run, model_type, base_model):
    """A Llama-like checkpoint (RMSNorm, rotary positions, grouped-query attention), and the
    families that normalise queries and keys after projecting them: the video on head 5, which
    shares its key head with head 4, judged through the family's own base model."""
    model = save_family_checkpoint(tmp_path / model_type, model_type)
    folder = run_the_rest(pipeline_run, tmp_path, model, "--head", "5", "--verify", "2")
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["model_type"] == model_type
    assert metrics["verify"]["max_abs_difference"] < 1e-4
    reference = model_through_layer(open_checkpoint(str(model)))
    assert type(reference).__name__ == base_model
    errors = []
    for frame, embeddings in saved_embeddings(folder).items():
        maps = transformers_attention(reference, embeddings[None], (5,))[0, 0].numpy()
        target = read_gray_png(folder.target_png(frame))
        errors.append(picture_metrics(sink_picture(maps), target)["mae"])
    assert len(errors) == COUNT and np.mean(errors) < 0.02, np.mean(errors)
    assert (tmp_path / "video.mp4").is_file() and (tmp_path / "plots" / "hero_frame.png").is_file()


def test_the_four_scripts_play_the_whole_square_on_a_bert(tmp_path, pipeline_run):
    """A BERT-like checkpoint: bidirectional, so one head shows the whole frame, with no
    --full-frame; metrics.json says layout "full" with one head, and plot.py and assemble.py
    need no flag."""
    model = save_family_checkpoint(tmp_path / "bert", "bert")
    folder = run_the_rest(pipeline_run, tmp_path, model, "--head", "3", "--verify", "2")
    flags = ["--model", model, "--frames-dir", folder.root]
    metrics = json.loads(folder.metrics.read_text())
    settings = metrics["settings"]
    assert (settings["model_type"], settings["layout"], settings["heads"]) == ("bert", "full", [3])
    reference = model_through_layer(open_checkpoint(str(model)))
    errors = []
    for frame, embeddings in saved_embeddings(folder).items():
        maps = transformers_attention(reference, embeddings[None], (3,))[0, 0].numpy()
        target = read_gray_png(folder.target_png(frame))
        shown = square_sink_picture(maps)
        # the upper triangle too: what a causal head can never show
        upper = np.triu(np.ones_like(target, dtype=bool), 1)
        errors.append(float(np.abs(shown - target)[upper].mean()))
        errors.append(picture_metrics(shown, target, region="square")["mae"])
    assert np.mean(errors) < 0.02, np.mean(errors)
    # --full-frame means the same: the same run, resumed
    resumed = run("optimize.py", *flags, *RUN, "--head", "3", "--full-frame")
    assert_ok(resumed)
    assert f"{COUNT} done, 0 to do" in resumed.stdout
