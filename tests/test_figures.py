"""plot.py and badapple.figures on a small fake run: a few 64x64 targets and attention maps."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from badapple.errors import UserError
from badapple.figures import (
    BEST_WORST,
    GRID_FRAMES,
    HERO_MIN_OUTLINE,
    HERO_MIN_STD,
    LOSS_FIGURES,
    PIXEL_FIGURES,
    best_worst,
    cumulative_quality,
    figure_files,
    hero_frame,
    layout_and_heads,
    loss_histogram,
    loss_timeline,
    outline_length,
    pick_hero,
    pixel_metrics_timeline,
    ranked_by_corr,
    rolling_mean,
    target_vs_output,
    write_all_figures,
)
from badapple.storage import FramesDir
from fixtures.clips import make_clip

REPO = Path(__file__).parents[1]
SIZE = 64  # pixels per side of the fake frames
ALL_FIGURES = list(PIXEL_FIGURES + LOSS_FIGURES)  # what a run with the original's loss gets
SINK_LOSS = "sink: mean squared distance of each pixel's logit relative to the sink to the range"
ORIGINAL_LOSS = "original: logit MSE against log of the row-normalised frame"


def make_run(root: Path, count: int) -> FramesDir:
    """A frames folder as download.py and optimize.py leave it, for `count` frames."""
    folder = FramesDir(root)
    folder.targets.mkdir(parents=True)
    folder.output.mkdir(parents=True)
    rows, columns = np.mgrid[:SIZE, :SIZE]  # [SIZE, SIZE] each
    causal = columns <= rows
    entries = []
    for frame in range(1, count + 1):
        radius = 6 + 4 * frame
        disc = (rows - SIZE / 2) ** 2 + (columns - SIZE / 2) ** 2 < radius**2
        target = np.zeros((SIZE, SIZE)) if frame == 2 else disc.astype(np.float64)  # 2: all black
        Image.fromarray((target * 255).astype(np.uint8)).save(folder.target_png(frame))
        attention = np.where(causal, 0.2 + 0.6 * target + 0.1 * np.sin(rows / 5), 0.0)
        rgb = (colormaps["magma"](attention)[..., :3] * 255).astype(np.uint8)  # [SIZE, SIZE, 3]
        Image.fromarray(rgb).save(folder.output_png(frame))
        entries.append(
            {
                "frame": frame,
                "loss": 0.1 + 0.3 * frame,
                "seconds": 0.4,
                "mae": 0.05 * frame,
                "iou": None if frame == 2 else 0.9 - 0.05 * frame,
                "corr": None if frame == 2 else 0.95 - 0.1 * frame,
                "embeddings": "chunk_00001.safetensors",
            }
        )
    losses = [e["loss"] for e in entries]
    metrics = {
        "settings": {
            "video": {"source": "clip.mp4", "fps": 15, "frame_count": count},
            "model": "gpt2",
            "layout": "half",
            "channels": 1,
            "heads": [0],
            "method": "adam",
            "steps": 10,
        },
        "display": {"blur": 1.5, "colormap": "magma"},
        "device": "cpu",
        "total_seconds": 1.0,
        "frame_count": count,
        "means": {"loss": float(np.mean(losses)), "mae": 0.1, "iou": 0.8, "corr": 0.9},
        "frames": entries,
    }
    folder.metrics.write_text(json.dumps(metrics))
    return folder


def rewrite_metrics(folder: FramesDir, **changes) -> dict:
    """Change fields of the run's metrics.json, each where optimize.py keeps it (a display
    setting under "display", loss_kind at the top, the others under "settings"); return the
    new metrics."""
    metrics = json.loads(folder.metrics.read_text())
    _change(metrics, **changes)
    folder.metrics.write_text(json.dumps(metrics))
    return metrics


def _change(metrics: dict, **changes) -> None:
    for name, value in changes.items():
        if name in ("blur", "colormap"):
            metrics["display"][name] = value
        elif name == "loss_kind":
            metrics[name] = value
        else:
            metrics["settings"][name] = value


def shown(ax) -> np.ndarray:
    """The picture an axes shows with imshow."""
    return np.asarray(ax.images[0].get_array())


def frame_of(title: str) -> int:
    """The frame number a panel's title names: "frame 3 · 0.1 s ..." -> 3."""
    return int(title.split()[1].rstrip(":"))


def assert_shows_frame(target_ax, map_ax, folder: FramesDir, metrics: dict, frame: int) -> None:
    """`target_ax` shows the frame's target PNG in [0, 1] (RGB in colour), `map_ax` its
    attention map's PNG, pixel for pixel."""
    colour = metrics["settings"]["channels"] == 3
    with Image.open(folder.target_png(frame)) as image:
        target = np.asarray(image.convert("RGB" if colour else "L"), dtype=np.float32) / 255
    with Image.open(folder.output_png(frame)) as image:
        attention = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(shown(target_ax), target)
    np.testing.assert_array_equal(shown(map_ax), attention)


def per_frame(metrics: dict, key: str) -> np.ndarray:
    return np.array([np.nan if e.get(key) is None else e[key] for e in metrics["frames"]])


def video_seconds(metrics: dict) -> np.ndarray:
    fps = metrics["settings"]["video"]["fps"]
    return np.array([(e["frame"] - 1) / fps for e in metrics["frames"]])


def checked_pixel_metrics(metrics: dict, folder: FramesDir) -> Figure:
    """Each row's line is its metric for every frame at its video time, gaps where null."""
    figure = pixel_metrics_timeline(metrics)
    for ax, key in zip(figure.axes, ("corr", "iou", "mae"), strict=True):
        line = ax.get_lines()[0]  # one frame each; the rolling mean is the second
        np.testing.assert_array_equal(line.get_xdata(), video_seconds(metrics))
        np.testing.assert_array_equal(line.get_ydata(), per_frame(metrics, key))
    return figure


def checked_cumulative_quality(metrics: dict, folder: FramesDir) -> Figure:
    """The curve steps down through every frame's corr, from 100% to the share reaching it."""
    figure = cumulative_quality(metrics)
    corr = np.sort(per_frame(metrics, "corr")[~np.isnan(per_frame(metrics, "corr"))])
    curve = figure.axes[0].get_lines()[0]
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    np.testing.assert_array_equal(x[1:-1], corr)
    shares = 100 * np.arange(len(corr), 0, -1) / len(corr)  # corr >= the i-th smallest
    np.testing.assert_allclose(y, [100.0, *shares, 0.0])
    return figure


def checked_best_worst(metrics: dict, folder: FramesDir) -> Figure:
    """Best frames by corr first, worst last, each target over its own map."""
    figure = best_worst(metrics, folder)
    ranked, key = ranked_by_corr(metrics)
    count = min(BEST_WORST, len(ranked))
    axes = np.array(figure.axes).reshape(4, count)
    for half, entries in enumerate((ranked[:count], ranked[::-1][:count])):
        for column, entry in enumerate(entries):
            top, bottom = axes[2 * half, column], axes[2 * half + 1, column]
            assert frame_of(top.get_title()) == entry["frame"]
            assert_shows_frame(top, bottom, folder, metrics, entry["frame"])
    return figure


def checked_target_vs_output(metrics: dict, folder: FramesDir) -> Figure:
    """Frames from the first to the last, each target over its own map."""
    figure = target_vs_output(metrics, folder)
    columns = len(figure.axes) // 2
    top, bottom = figure.axes[:columns], figure.axes[columns:]
    frames = [frame_of(ax.get_title()) for ax in top]
    numbers = [e["frame"] for e in metrics["frames"]]
    assert columns == min(GRID_FRAMES, len(numbers)) and frames == sorted(set(frames))
    assert (frames[0], frames[-1]) == (numbers[0], numbers[-1])
    for frame, target_ax, map_ax in zip(frames, top, bottom, strict=True):
        assert_shows_frame(target_ax, map_ax, folder, metrics, frame)
    return figure


def checked_hero_frame(metrics: dict, folder: FramesDir) -> Figure:
    """The hero frame's target beside its map, its figures in the title."""
    figure = hero_frame(metrics, folder)
    hero = pick_hero(metrics, folder)
    assert figure.get_suptitle().startswith(f"Frame {hero['frame']}: corr ")
    assert_shows_frame(figure.axes[0], figure.axes[1], folder, metrics, hero["frame"])
    return figure


def checked_loss_timeline(metrics: dict, folder: FramesDir) -> Figure:
    """Every frame's loss at its video time."""
    figure = loss_timeline(metrics)
    line = figure.axes[0].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), video_seconds(metrics))
    np.testing.assert_array_equal(line.get_ydata(), per_frame(metrics, "loss"))
    return figure


def checked_loss_histogram(metrics: dict, folder: FramesDir) -> Figure:
    """Every frame counted once, in the bar of its loss."""
    figure = loss_histogram(metrics)
    bars = [(bar.get_x(), bar.get_x() + bar.get_width(), bar.get_height())
            for bar in figure.axes[0].patches]  # fmt: skip
    assert sum(height for _, _, height in bars) == len(metrics["frames"])
    for loss in per_frame(metrics, "loss"):
        assert any(low <= loss <= high and height > 0 for low, high, height in bars), loss
    return figure


CHECKED = {  # each figure of `write_all_figures`, with what it must show checked
    "pixel_metrics.png": checked_pixel_metrics,
    "cumulative_quality.png": checked_cumulative_quality,
    "best_worst.png": checked_best_worst,
    "target_vs_output.png": checked_target_vs_output,
    "hero_frame.png": checked_hero_frame,
    "loss_timeline.png": checked_loss_timeline,
    "loss_histogram.png": checked_loss_histogram,
}


def png_pixels(source) -> np.ndarray:
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def check_figures(out_dir: Path, folder: FramesDir, names: list[str] = ALL_FIGURES) -> None:
    """`out_dir` holds exactly the `names` figures, each the one of its name for the run in
    `folder`: it shows what `CHECKED` says it must, and the PNG is that figure, pixel for pixel."""
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)  # no .part left
    metrics = json.loads(folder.metrics.read_text())
    for name in names:
        drawn = io.BytesIO()
        CHECKED[name](metrics, folder).savefig(drawn, format="png")
        np.testing.assert_array_equal(png_pixels(out_dir / name), png_pixels(drawn), err_msg=name)


def test_write_all_figures(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=5)
    paths = write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    assert [p.name for p in paths] == ALL_FIGURES  # no loss_kind: an older run, original's loss
    check_figures(tmp_path / "plots", folder)


def test_one_frame(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=1)
    write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    check_figures(tmp_path / "plots", folder)


def test_all_corr_null(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=2)
    metrics = json.loads(folder.metrics.read_text())
    for entry in metrics["frames"]:
        entry["corr"] = entry["iou"] = None
    assert pick_hero(metrics, folder)["frame"] == 1  # falls back to the lowest loss
    for figure in (hero_frame(metrics, folder), pixel_metrics_timeline(metrics)):
        figure.savefig(io.BytesIO(), format="png")  # draws without an error


def test_hero_skips_uniform_targets(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=2)  # frame 1: a disc, frame 2: all black
    metrics = json.loads(folder.metrics.read_text())
    metrics["frames"][1]["corr"] = 0.99  # frame 2 has the best corr but an all-black target
    assert pick_hero(metrics, folder)["frame"] == 1


def save_target(folder: FramesDir, frame: int, picture: np.ndarray) -> None:
    Image.fromarray((picture * 255).round().astype(np.uint8)).save(folder.target_png(frame))


def test_the_hero_is_a_figure_not_a_screen_split_in_two(tmp_path: Path) -> None:
    """A frame half black, half white plays at corr 1.00 and shows nothing of the video: the
    rule before (the best corr whose target is not near-uniform) chose it; now a dancer that
    plays a little worse is the hero."""
    folder = make_run(tmp_path / "frames", count=3)
    split = np.zeros((SIZE, SIZE))
    split[:, SIZE // 2 :] = 1.0  # [SIZE, SIZE]: the left half black, the right half white
    dancer = make_clip("silhouettes", frames=1, size=SIZE)[0]  # [SIZE, SIZE]
    save_target(folder, 1, split)
    save_target(folder, 3, dancer)
    metrics = json.loads(folder.metrics.read_text())
    metrics["frames"][0]["corr"], metrics["frames"][2]["corr"] = 1.0, 0.9
    folder.metrics.write_text(json.dumps(metrics))

    ranked, _ = ranked_by_corr(metrics)
    assert ranked[0]["frame"] == 1 and split.std() >= HERO_MIN_STD  # the rule before took it
    assert outline_length(split) <= 1.0 < HERO_MIN_OUTLINE <= outline_length(dancer)
    assert pick_hero(metrics, folder)["frame"] == 3
    figure = hero_frame(metrics, folder)
    assert figure.get_suptitle().startswith("Frame 3: corr 0.90")
    assert np.allclose(shown(figure.axes[0]), dancer, atol=1 / 255)


def test_a_split_screen_is_the_hero_when_no_target_shows_a_figure(tmp_path: Path) -> None:
    """Then the best frame whose target is not near-uniform is, before a uniform one."""
    folder = make_run(tmp_path / "frames", count=3)
    split = np.zeros((SIZE, SIZE))
    split[SIZE // 2 :] = 1.0  # the top half black, the bottom half white
    save_target(folder, 3, split)
    metrics = json.loads(folder.metrics.read_text())
    metrics["frames"][1]["corr"] = 0.99  # frame 2: the best corr, but all black
    metrics["frames"][2]["corr"] = 0.95  # frame 3, the split: better than frame 1's disc
    disc = np.asarray(Image.open(folder.target_png(1)), dtype=np.float64) / 255
    assert outline_length(disc) < HERO_MIN_OUTLINE  # a disc 20 px wide in 64 is no figure
    assert outline_length(split) < HERO_MIN_OUTLINE
    assert pick_hero(metrics, folder)["frame"] == 3


def test_titles_name_the_model_not_its_path(tmp_path: Path) -> None:
    """A hub id as it is; a local checkpoint by its folder's name, however it was given."""
    folder = make_run(tmp_path / "frames", count=3)
    cases = [  # (--model, the commit a hub run records, what the titles show, what they hide)
        ("/home/someone/checkpoints/gpt2-xl-finetuned", None, "gpt2-xl-finetuned", "/home"),
        ("checkpoints/smollm2", None, "smollm2", "checkpoints/"),
        ("~/models/qwen3-like", None, "qwen3-like", "~"),
        ("openai-community/gpt2-xl", "0123456789abcdef", "openai-community/gpt2-xl", None),
    ]
    for model, commit, name, hidden in cases:
        metrics = rewrite_metrics(folder, model=model, model_commit=commit)
        titles = [
            hero_frame(metrics, folder).axes[1].get_title(),
            target_vs_output(metrics, folder).get_suptitle(),
        ]
        for title in titles:
            assert f"{name} layer 0" in title, title
            assert hidden is None or hidden not in title, title


def test_missing_metrics(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run optimize.py first"):
        write_all_figures(frames_dir=tmp_path, out_dir=tmp_path / "plots")


def test_rolling_mean_ignores_gaps() -> None:
    series = np.array([1.0, np.nan, 3.0, 5.0])
    assert np.allclose(rolling_mean(series, 3), [1.0, 2.0, 4.0, 4.0])
    # a window longer than the series is the series' length: 4 values centred on [i-2, i+1]
    assert np.allclose(rolling_mean(series, 100), [1.0, 2.0, 3.0, 4.0])
    assert np.allclose(rolling_mean(series, 4), [1.0, 2.0, 3.0, 4.0])


def start_plot(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "plot.py", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_plot_script(tmp_path: Path) -> None:
    """A good run and a run without metrics, started together: each pays ~5 s of imports."""
    folder = make_run(tmp_path / "frames", count=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    good = start_plot("--frames-dir", str(folder.root), "--out-dir", str(tmp_path / "plots"))
    bad = start_plot("--frames-dir", str(empty), "--out-dir", str(empty / "plots"))
    good_out, good_err = good.communicate(timeout=120)
    _, bad_err = bad.communicate(timeout=120)

    assert good.returncode == 0, good_err
    check_figures(tmp_path / "plots", folder)
    assert str(tmp_path / "plots") in good_out

    assert bad.returncode != 0
    assert "Traceback" not in bad_err
    assert len(bad_err.strip().splitlines()) == 1, bad_err
    assert "run optimize.py first" in bad_err
    assert not (empty / "plots").exists()


def test_a_full_frame_run_is_drawn_with_its_heads(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    metrics = json.loads(folder.metrics.read_text())
    _change(metrics, layout="full", heads=[2, 5])
    for entry in metrics["frames"]:
        entry["loss_per_head"] = [entry["loss"], entry["loss"]]
    folder.metrics.write_text(json.dumps(metrics))
    assert layout_and_heads(metrics) == ("full", [2, 5])
    assert "heads 2 + 5 transposed" in hero_frame(metrics, folder).axes[1].get_title()
    write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    check_figures(tmp_path / "plots", folder)


def test_a_sink_run_gets_no_loss_figures(tmp_path: Path) -> None:
    """A sink run's loss is not the original's: comparing it with the original's would mislead."""
    folder = make_run(tmp_path / "frames", count=4)
    metrics = rewrite_metrics(folder, render="sink", loss_kind=SINK_LOSS, colormap="viridis")
    assert figure_files(metrics) == list(PIXEL_FIGURES)
    paths = write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    assert [p.name for p in paths] == [
        "pixel_metrics.png",
        "cumulative_quality.png",
        "best_worst.png",
        "target_vs_output.png",
        "hero_frame.png",
    ]
    check_figures(tmp_path / "plots", folder, list(PIXEL_FIGURES))


def test_a_zscore_run_gets_the_loss_figures_too(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=4)
    metrics = rewrite_metrics(folder, render="zscore", loss_kind=ORIGINAL_LOSS)
    assert figure_files(metrics) == ALL_FIGURES
    paths = write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    assert {"loss_timeline.png", "loss_histogram.png"} <= {p.name for p in paths}
    check_figures(tmp_path / "plots", folder)


def test_best_worst_ranks_by_corr_not_loss(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=6)  # loss rises with the frame: 1 is best by it
    metrics = json.loads(folder.metrics.read_text())
    for entry, corr in zip(metrics["frames"], [0.5, None, 0.9, 0.7, 0.95, 0.1], strict=True):
        entry["corr"] = corr
    ranked, key = ranked_by_corr(metrics)
    assert key == "corr"
    assert [e["frame"] for e in ranked] == [5, 3, 4, 1, 6]  # frame 2 has no corr: in neither half

    figure = best_worst(metrics, folder, count=2)
    titles = [figure.axes[i].get_title() for i in range(8)]  # rows: best, attention, worst, ...
    assert titles[0].startswith("frame 5") and titles[1].startswith("frame 3")
    assert titles[4].startswith("frame 6") and titles[5].startswith("frame 1")
    assert "corr 0.950" in titles[0]
    assert figure.get_suptitle().endswith("by corr")

    for entry in metrics["frames"]:
        entry["corr"] = None
    ranked, key = ranked_by_corr(metrics)  # no corr at all: falls back to the loss
    assert key == "loss" and [e["frame"] for e in ranked] == [1, 2, 3, 4, 5, 6]


def drawn_text_boxes(figure: Figure, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Render `figure` with Agg; the window extent of every non-empty Text artist it drew
    (titles, axis and tick labels, annotations, legend texts), keyed by the text."""
    boxes: dict[str, list] = {}
    draw = Text.draw

    def recording_draw(self: Text, renderer) -> None:
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            boxes.setdefault(self.get_text(), []).append(self.get_window_extent(renderer))

    with monkeypatch.context() as patch:
        patch.setattr(Text, "draw", recording_draw)
        FigureCanvasAgg(figure).draw()
    return boxes


def assert_no_text_overlaps(figure: Figure, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every drawn text lies inside the figure and clear of every other; returns the texts."""
    boxes = drawn_text_boxes(figure, monkeypatch)
    flat = [(text, box) for text, found in boxes.items() for box in found]
    page = figure.bbox
    for text, box in flat:
        inside = box.x0 >= page.x0 and box.x1 <= page.x1 and box.y0 >= page.y0 and box.y1 <= page.y1
        assert inside, f"{text!r} is cut off at the figure's edge"
    for i, (text_a, a) in enumerate(flat):
        for text_b, b in flat[i + 1 :]:
            wide = min(a.x1, b.x1) - max(a.x0, b.x0)
            high = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert wide <= 0 or high <= 0, f"{text_a!r} overlaps {text_b!r}"
    return list(boxes)


def test_cumulative_quality_by_corr_has_no_overlapping_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_run(tmp_path / "frames", count=1)
    metrics = json.loads(folder.metrics.read_text())
    # 10 frames; 0.9 and 0.95 are reached by nearly the same shares, the case where labels
    # floating beside the two marks land on each other. Frame 11 has no corr.
    corr = [0.2, 0.5, 0.8, 0.91, 0.96, 0.97, 0.97, 0.98, 0.99, 0.99, None]
    metrics["frames"] = [
        {"frame": i + 1, "loss": 1.0, "mae": 0.1, "iou": 0.5, "corr": c} for i, c in enumerate(corr)
    ]
    figure = cumulative_quality(metrics)
    texts = assert_no_text_overlaps(figure, monkeypatch)
    # the shares are written out, in the legend: 7 of the 10 frames reach 0.9, 6 reach 0.95
    assert "corr ≥ 0.90: 70%" in texts and "corr ≥ 0.95: 60%" in texts
    assert any("10 frames\n1 frame without a corr" in text for text in texts)  # the title was drawn
    curve = figure.axes[0].get_lines()[0]
    shares = dict(zip(curve.get_xdata(), curve.get_ydata(), strict=True))
    assert shares[0.91] == pytest.approx(70.0)  # corr >= 0.91: 7 of the 10 frames with a corr


def test_pixel_metrics_rows_and_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_run(tmp_path / "frames", count=5)
    metrics = json.loads(folder.metrics.read_text())
    figure = pixel_metrics_timeline(metrics)
    rows = [ax.get_ylabel() for ax in figure.axes]
    assert rows == ["Pearson correlation", "IoU", "MAE"]  # corr first: it judges a frame
    texts = assert_no_text_overlaps(figure, monkeypatch)
    assert "one frame" in texts  # the legend was drawn and checked too
    for entry in metrics["frames"]:
        entry["corr"] = entry["iou"] = None
    texts = assert_no_text_overlaps(pixel_metrics_timeline(metrics), monkeypatch)
    assert "no values (all null)" in texts


def colorbar_cmap(figure: Figure) -> str:
    """The colormap name of the hero figure's colorbar: its solids are a QuadMesh."""
    return next(c for c in figure.axes[2].collections if isinstance(c, QuadMesh)).get_cmap().name


def test_hero_colorbar_says_what_a_level_means(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    metrics = json.loads(folder.metrics.read_text())  # an older run: zscore, magma
    figure = hero_frame(metrics, folder)
    colorbar = figure.axes[2]
    assert colorbar.get_ylabel().startswith("attention (row z-score")
    assert colorbar_cmap(figure) == "magma"
    assert "loss" in figure.get_suptitle()  # the original's loss, comparable with its numbers
    assert figure.axes[1].get_title().startswith("gpt2 layer 0\nhead 0")

    _change(metrics, render="sink", loss_kind=SINK_LOSS, colormap="viridis")
    figure = hero_frame(metrics, folder)
    colorbar = figure.axes[2]
    assert colorbar.get_ylabel() == (
        "attention relative to the row's sink (0 none, 1 as much as the sink)"
    )
    assert colorbar_cmap(figure) == "viridis"
    assert "loss" not in figure.get_suptitle()


def test_a_colour_run_shows_rgb_targets(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    rows = np.arange(SIZE)[:, None].repeat(SIZE, axis=1)  # [SIZE, SIZE]
    for frame in range(1, 4):
        rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        rgb[..., frame - 1] = 255  # frame 1 red, 2 green, 3 blue
        rgb[rows < SIZE // 2] = 0  # with a black top half, so the target shows a shape
        Image.fromarray(rgb).save(folder.target_png(frame))
    metrics = rewrite_metrics(
        folder, channels=3, render="sink", loss_kind=SINK_LOSS, heads=[0, 1, 2]
    )
    for entry in metrics["frames"]:
        entry["corr_per_channel"] = [entry["corr"]] * 3
    folder.metrics.write_text(json.dumps(metrics))

    target = target_vs_output(metrics, folder).axes[0].images[0].get_array()
    assert target.shape == (SIZE, SIZE, 3)
    assert target[SIZE - 1, 0].tolist() == [1.0, 0.0, 0.0]  # frame 1: red in [0, 1], not gray
    hero = hero_frame(metrics, folder)
    assert len(hero.axes) == 2  # no colorbar: the map is RGB, no colormap to explain
    assert "heads 0, 1, 2" in hero.axes[1].get_title()
    write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    check_figures(tmp_path / "plots", folder, list(PIXEL_FIGURES))


def test_hero_frame_labels_stay_inside_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    metrics = json.loads(folder.metrics.read_text())
    # a long local model path and six heads: the two-line title of a colour full-frame run
    metrics["settings"]["model"] = "/home/someone/checkpoints/gpt2-xl-finetuned"
    texts = assert_no_text_overlaps(hero_frame(metrics, folder), monkeypatch)
    assert "key token position" in texts  # the bottom label was drawn, and whole


def test_the_display_atlas_marks_the_played_head_and_the_surveyed_mae(tmp_path: Path) -> None:
    """Layers x heads by span; the surveyed displays carry their mae; the played head is
    outlined; a local checkpoint is named by its folder, not its whole path."""
    from matplotlib.patches import Rectangle

    from badapple.figures import ATLAS_FIGURE, display_atlas

    folder = make_run(tmp_path / "frames", count=4)
    metrics = json.loads(folder.metrics.read_text())
    metrics["settings"].update(layer=1, heads=[2], model="/somewhere/deep/smollm2")
    metrics["display_atlas"] = {
        "span_nats": [[0.8, 1.4, 0.7], [60.0, 50.0, 77.0], [None, None, None]],
        "weak_span_nats": 6.0,
        "survey": [
            {"layer": 1, "heads": [2], "mae": 0.0004, "corr": 1.0, "span_nats": 77.0},
            {"layer": 0, "heads": [1], "mae": 0.0158, "corr": 0.9, "span_nats": 1.4},
        ],
    }
    folder.metrics.write_text(json.dumps(metrics))
    assert figure_files(metrics)[-1] == ATLAS_FIGURE
    figure = display_atlas(metrics)
    ax = figure.axes[0]
    outlined = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [(p.get_x(), p.get_y()) for p in outlined] == [(1.5, 0.5)]  # head 2 of layer 1
    texts = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert texts == {((2, 1), "0.0004"), ((1, 0), "0.0158")}
    title = ax.get_title()
    assert "smollm2" in title and "/somewhere" not in title and "layer 1" in title
    image = ax.images[0].get_array()
    assert image.mask[2].all() and not image.mask[:2].any()  # the unmeasured layer is blank
    paths = write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    assert paths[-1].name == ATLAS_FIGURE and paths[-1].stat().st_size > 0
