"""plot.py and badapple.figures on a small fake run: a few 64x64 targets and attention maps."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from badapple.errors import UserError
from badapple.figures import (
    FIGURE_FILES,
    hero_frame,
    layout_and_heads,
    pick_hero,
    pixel_metrics_timeline,
    rolling_mean,
    write_all_figures,
)
from badapple.storage import FramesDir

REPO = Path(__file__).parents[1]
SIZE = 64  # pixels per side of the fake frames


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
                "embeddings": "frames_00001-00064.safetensors",
            }
        )
    losses = [e["loss"] for e in entries]
    metrics = {
        "args": {"model": "gpt2", "head": 0, "method": "adam", "steps": 10},
        "device": "cpu",
        "size": SIZE,
        "fps": 15,
        "total_seconds": 1.0,
        "frame_count": count,
        "means": {"loss": float(np.mean(losses)), "mae": 0.1, "iou": 0.8, "corr": 0.9},
        "frames": entries,
    }
    folder.metrics.write_text(json.dumps(metrics))
    return folder


def check_figures(out_dir: Path) -> None:
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(FIGURE_FILES)  # no .part left
    for name in FIGURE_FILES:
        with Image.open(out_dir / name) as image:
            assert image.format == "PNG"
            assert image.width > 200 and image.height > 200, name
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 0, f"{name} is blank"


def test_write_all_figures(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=5)
    paths = write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    assert [p.name for p in paths] == list(FIGURE_FILES)
    check_figures(tmp_path / "plots")


def test_one_frame(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=1)
    write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    check_figures(tmp_path / "plots")


def test_all_corr_null(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=2)
    metrics = json.loads(folder.metrics.read_text())
    for entry in metrics["frames"]:
        entry["corr"] = entry["iou"] = None
    assert pick_hero(metrics, folder)["frame"] == 1  # falls back to the lowest loss
    for figure in (hero_frame(metrics, folder), pixel_metrics_timeline(metrics)):
        figure.savefig(io.BytesIO(), format="png")  # draws without an error


def test_hero_skips_uniform_targets(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    metrics = json.loads(folder.metrics.read_text())
    metrics["frames"][1]["corr"] = 0.99  # frame 2 has the best corr but an all-black target
    assert pick_hero(metrics, folder)["frame"] == 1


def test_missing_metrics(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run optimize.py first"):
        write_all_figures(frames_dir=tmp_path, out_dir=tmp_path / "plots")


def test_rolling_mean_ignores_gaps() -> None:
    series = np.array([1.0, np.nan, 3.0, 5.0])
    assert np.allclose(rolling_mean(series, 3), [1.0, 2.0, 4.0, 4.0])
    long = rolling_mean(series, 100)  # a window longer than the series
    assert long.shape == (4,) and np.all((long >= 1.0) & (long <= 5.0))


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
    check_figures(tmp_path / "plots")
    assert str(tmp_path / "plots") in good_out

    assert bad.returncode != 0
    assert "Traceback" not in bad_err
    assert len(bad_err.strip().splitlines()) == 1, bad_err
    assert "run optimize.py first" in bad_err
    assert not (empty / "plots").exists()


def test_a_full_frame_run_is_drawn_with_its_heads(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "frames", count=3)
    metrics = json.loads(folder.metrics.read_text())
    metrics.update(layout="full", heads=[2, 5])
    for entry in metrics["frames"]:
        entry["loss_per_head"] = [entry["loss"], entry["loss"]]
    folder.metrics.write_text(json.dumps(metrics))
    assert layout_and_heads(metrics) == ("full", [2, 5])
    assert layout_and_heads({"args": {"head": 3}}) == ("half", [3])  # runs from before
    assert "heads 2 + 5 transposed" in hero_frame(metrics, folder).axes[1].get_title()
    write_all_figures(frames_dir=folder.root, out_dir=tmp_path / "plots")
    check_figures(tmp_path / "plots")
