"""The figures of plot.py: each function builds one matplotlib Figure from `metrics.json`.

The functions build `matplotlib.figure.Figure` objects directly, never through pyplot, so no
global state or GUI backend is involved; `write_all_figures` saves them all as PNGs.

`metrics` is the dict optimize.py writes to `frames/output/metrics.json`: `fps`, `args`, and
`frames`, one entry per frame sorted by frame number (1-based) with `loss` and the pixel
figures `mae`, `iou`, `corr` (null where undefined, e.g. an all-black target). A frame's time
in the video is (frame - 1) / fps seconds. `layout` says what the maps show: "half" (the
original's: the lower triangle of one head, scored there) or "full" (`heads` A below the
diagonal and B transposed above it, scored on the whole square); runs from before full frames
recorded none and are half.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from badapple.errors import UserError
from badapple.storage import FramesDir, read_gray_png, read_json, read_rgb_png, write_atomic

DPI = 120  # pixels per inch of the PNGs: an 11-inch-wide figure is 1320 px
ROLLING_SECONDS = 1.0  # window of the rolling mean on the timelines, in video seconds
LOSS_MARKS = (0.5, 1.0)  # the original reported 81% of frames under 0.5 and 95% under 1.0
GRID_FRAMES = 6  # frames in the target-vs-output grid, evenly spread over the video
BEST_WORST = 4  # frames in each half of the best/worst figure
# A hero target must show shapes, not a near-uniform screen: a black/white picture has
# std sqrt(p(1 - p)), so 0.25 asks for at least ~7% of the minority colour.
HERO_MIN_STD = 0.25

FIGURE_FILES = (
    "loss_timeline.png",
    "loss_histogram.png",
    "target_vs_output.png",
    "cumulative_quality.png",
    "best_worst.png",
    "hero_frame.png",
    "pixel_metrics.png",
)

LOSS_LABEL = "loss per frame (logit-space MSE, nats²)"
TIME_LABEL = "video time (s)"


# --- reading metrics ------------------------------------------------------------------------


def load_metrics(frames_dir: FramesDir) -> dict:
    """The metrics of a run, checked for the fields the figures use."""
    path = frames_dir.metrics
    metrics = read_json(path)
    if metrics is None:
        raise UserError(f"no metrics in {path}; run optimize.py first")
    frames = metrics.get("frames") if isinstance(metrics, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path} lists no frames; run optimize.py first")
    fps = metrics.get("fps")
    if not isinstance(fps, int | float) or fps <= 0:
        raise UserError(f"{path} has no valid fps; rerun optimize.py to rewrite it")
    for entry in frames:
        if not isinstance(entry.get("frame"), int) or not isinstance(
            entry.get("loss"), int | float
        ):
            raise UserError(
                f"{path} has a frame entry without frame/loss ({entry!r:.80}); "
                "rerun optimize.py to rewrite it"
            )
    return metrics


def values(metrics: dict, key: str) -> np.ndarray:
    """One per-frame figure, float64 [frames], NaN where it is null or absent."""
    return np.array([np.nan if f.get(key) is None else float(f[key]) for f in metrics["frames"]])


def seconds(metrics: dict) -> np.ndarray:
    """Each frame's time in the video, float64 [frames]."""
    numbers = np.array([f["frame"] for f in metrics["frames"]], dtype=np.float64)
    return (numbers - 1) / metrics["fps"]


def rolling_mean(series: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over `window` neighbours, NaN ignored, fewer at the ends. [n] -> [n]"""
    window = max(1, min(window, len(series)))  # np.convolve "same" is max(n, window) long
    valid = ~np.isnan(series)
    kernel = np.ones(window)
    sums = np.convolve(np.where(valid, series, 0.0), kernel, mode="same")
    counts = np.convolve(valid.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts  # NaN where a window holds no value


def _rolling_window(metrics: dict) -> int:
    return max(1, round(metrics["fps"] * ROLLING_SECONDS))


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _nanmean(series: np.ndarray) -> float:
    return float(np.nanmean(series)) if np.any(~np.isnan(series)) else float("nan")


# --- pictures -------------------------------------------------------------------------------


def _target(frames_dir: FramesDir, frame: int) -> np.ndarray:
    """The target picture, float32 gray in [0, 1], [size, size]."""
    return read_gray_png(frames_dir.target_png(frame))


def _attention(frames_dir: FramesDir, frame: int) -> np.ndarray:
    """The rendered attention map, uint8 RGB, [size, size, 3]."""
    path = frames_dir.output_png(frame)
    try:
        return read_rgb_png(path)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; rerun optimize.py") from None
    except OSError as error:
        raise UserError(
            f"{path} is not a readable PNG ({error}); delete it and rerun optimize.py"
        ) from None


def _show(ax: Axes, pixels: np.ndarray) -> None:
    if pixels.ndim == 2:
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(pixels)
    ax.set_xticks([])
    ax.set_yticks([])


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def layout_and_heads(metrics: dict) -> tuple[str, list[int]]:
    """The run's layout ("half" or "full") and its heads, read from metrics.json."""
    args = metrics.get("args", {})
    layout = metrics.get("layout", args.get("layout", "half"))
    heads = metrics.get("heads", args.get("heads", [args.get("head", 0)]))
    return layout, list(heads)


def _heads_label(metrics: dict) -> str:
    """Which heads a map shows: "head 0", or "heads 0 + 1 transposed" (full frame)."""
    layout, heads = layout_and_heads(metrics)
    if layout == "full":
        return f"heads {heads[0]} + {heads[1]} transposed"
    return f"head {heads[0]}"


def _frame_title(metrics: dict, entry: dict) -> str:
    time = (entry["frame"] - 1) / metrics["fps"]
    return f"frame {entry['frame']} · {time:.1f} s"


# --- the figures ----------------------------------------------------------------------------


def loss_timeline(metrics: dict) -> Figure:
    """Loss of every frame against video time, with a rolling mean over ~1 s of frames."""
    time, loss = seconds(metrics), values(metrics, "loss")
    window = _rolling_window(metrics)
    few = len(loss) <= 60  # show markers when a line alone would hide single frames
    figure = _figure(11, 4.2)
    ax = figure.subplots()
    ax.plot(time, loss, ".", ms=6 if few else 3, color="tab:blue", alpha=0.35, label="one frame")
    ax.plot(
        time,
        rolling_mean(loss, window),
        color="tab:blue",
        lw=1.8,
        marker="o" if few else None,
        ms=3,
        label=f"rolling mean over {window} frames ({window / metrics['fps']:.1f} s)",
    )
    ax.axhline(
        np.nanmedian(loss),
        color="tab:orange",
        ls="--",
        lw=1,
        label=f"median {np.nanmedian(loss):.3f}",
    )
    ax.set_title(
        f"Loss per frame over the video: {len(loss)} frames, mean {np.nanmean(loss):.3f}, "
        f"worst {np.nanmax(loss):.3f}"
    )
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return figure


def loss_histogram(metrics: dict) -> Figure:
    """How many frames reach each loss, with the mean and median marked."""
    loss = values(metrics, "loss")
    top = max(float(np.nanmax(loss)), 1e-6) * 1.02
    figure = _figure(8, 4.5)
    ax = figure.subplots()
    ax.hist(loss, bins=np.linspace(0.0, top, 51), color="tab:blue", alpha=0.8)
    ax.axvline(np.nanmean(loss), color="black", lw=1.2, label=f"mean {np.nanmean(loss):.3f}")
    ax.axvline(
        np.nanmedian(loss),
        color="tab:orange",
        ls="--",
        lw=1.2,
        label=f"median {np.nanmedian(loss):.3f}",
    )
    ax.set_title(f"Distribution of the loss over {len(loss)} frames")
    ax.set_xlabel(LOSS_LABEL)
    ax.set_ylabel("frames")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return figure


def cumulative_quality(metrics: dict) -> Figure:
    """Share of frames with a loss at most x, the share under each of LOSS_MARKS written out."""
    loss = np.sort(values(metrics, "loss"))  # [frames]
    share = np.arange(1, len(loss) + 1) / len(loss) * 100
    right = max(float(loss[-1]), *LOSS_MARKS) * 1.08
    figure = _figure(8, 4.8)
    ax = figure.subplots()
    ax.step(
        np.concatenate([[0.0], loss, [right]]),
        np.concatenate([[0.0], share, [100.0]]),
        where="post",
        color="tab:blue",
        lw=1.8,
    )
    notes = []
    for mark, color in zip(LOSS_MARKS, ("tab:green", "tab:red"), strict=False):
        under = float(np.mean(loss < mark) * 100)
        notes.append(f"{under:.0f}% under {mark:.1f}")
        ax.axvline(mark, color=color, ls="--", lw=1)
        ax.axhline(under, color=color, ls=":", lw=1)
        ax.annotate(
            f"{under:.0f}% of frames\nunder {mark:.1f}",
            (mark, under),
            xytext=(6, -28),
            textcoords="offset points",
            color=color,
            fontsize=10,
        )
    ax.set_title("Cumulative distribution of the loss: " + ", ".join(notes))
    ax.set_xlabel(LOSS_LABEL)
    ax.set_ylabel("frames with loss ≤ x (%)")
    ax.set_xlim(0, right)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    return figure


def target_vs_output(metrics: dict, frames_dir: FramesDir, count: int = GRID_FRAMES) -> Figure:
    """Targets over attention maps for `count` frames spread evenly over the video."""
    entries = metrics["frames"]
    spots = np.linspace(0, len(entries) - 1, min(count, len(entries)))
    picks = [entries[i] for i in sorted(set(spots.round().astype(int).tolist()))]
    figure = _figure(max(5.0, 2.3 * len(picks) + 0.6), 5.6)
    axes = figure.subplots(2, len(picks), squeeze=False)
    for column, entry in enumerate(picks):
        _show(axes[0, column], _target(frames_dir, entry["frame"]))
        _show(axes[1, column], _attention(frames_dir, entry["frame"]))
        axes[0, column].set_title(
            f"{_frame_title(metrics, entry)}\ncorr {_number(entry.get('corr'))}", fontsize=10
        )
    axes[0, 0].set_ylabel("target")
    axes[1, 0].set_ylabel("attention")
    figure.suptitle("Target vs GPT-2 attention, frames spread over the video")
    return figure


def best_worst(metrics: dict, frames_dir: FramesDir, count: int = BEST_WORST) -> Figure:
    """The `count` lowest-loss and `count` highest-loss frames, each target over its attention."""
    entries = metrics["frames"]
    order = np.argsort(values(metrics, "loss"), kind="stable")  # [frames], best first
    count = min(count, len(entries))
    halves = (("best", order[:count]), ("worst", order[::-1][:count]))
    figure = _figure(max(5.0, 2.3 * count + 0.8), 10)
    axes = figure.subplots(4, count, squeeze=False)
    for half, (name, indices) in enumerate(halves):
        for column, index in enumerate(indices):
            entry = entries[index]
            top, bottom = axes[2 * half, column], axes[2 * half + 1, column]
            _show(top, _target(frames_dir, entry["frame"]))
            _show(bottom, _attention(frames_dir, entry["frame"]))
            top.set_title(f"{_frame_title(metrics, entry)}\nloss {entry['loss']:.3f}", fontsize=10)
        axes[2 * half, 0].set_ylabel(f"{name}: target")
        axes[2 * half + 1, 0].set_ylabel(f"{name}: attention")
    figure.suptitle(f"The {count} best and {count} worst frames by loss")
    return figure


def pick_hero(metrics: dict, frames_dir: FramesDir) -> dict:
    """The frame with the highest corr whose target shows shapes; the lowest loss if none does."""
    ranked = sorted(
        (e for e in metrics["frames"] if e.get("corr") is not None),
        key=lambda e: e["corr"],
        reverse=True,
    )
    for entry in ranked:  # targets read lazily: the first few usually qualify
        if _target(frames_dir, entry["frame"]).std() >= HERO_MIN_STD:
            return entry
    return min(metrics["frames"], key=lambda e: e["loss"])


def hero_frame(metrics: dict, frames_dir: FramesDir) -> Figure:
    """One representative frame, large: the target beside the attention map it became."""
    entry = pick_hero(metrics, frames_dir)
    args = metrics.get("args", {})
    model, layer = args.get("model", "gpt2"), args.get("layer", 0)
    figure = _figure(12.5, 6.4)
    left, right = figure.subplots(1, 2)
    _show(left, _target(frames_dir, entry["frame"]))
    left.set_title(f"target, {_frame_title(metrics, entry)}")
    right.imshow(_attention(frames_dir, entry["frame"]))
    right.set_title(f"{model} layer {layer}, {_heads_label(metrics)}: attention weights")
    right.set_xlabel("key token position")
    right.set_ylabel("query token position")
    figure.colorbar(
        ScalarMappable(Normalize(0, 1), cmap="magma"),
        ax=right,
        shrink=0.85,
        label="attention (row z-score, 1st–99th percentile → 0–1)",
    )
    figure.suptitle(
        f"Frame {entry['frame']}: loss {entry['loss']:.3f} · "
        f"corr {_number(entry.get('corr'))} · IoU {_number(entry.get('iou'))} · "
        f"MAE {_number(entry.get('mae'), 3)}",
        fontsize=14,
    )
    return figure


def pixel_metrics_timeline(metrics: dict) -> Figure:
    """MAE, IoU and correlation of every frame against video time; null values leave gaps."""
    time = seconds(metrics)
    window = _rolling_window(metrics)
    few = len(time) <= 60
    rows = (
        ("mae", "MAE (gray levels, 0–1)", "lower is better"),
        ("iou", "IoU (0–1)", "higher is better"),
        ("corr", "Pearson correlation", "higher is better"),
    )
    figure = _figure(11, 7.5)
    axes = figure.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, label, better) in zip(axes, rows, strict=True):
        series = values(metrics, key)  # [frames], NaN = null
        missing = int(np.isnan(series).sum())
        ax.plot(
            time,
            series,
            lw=0.7,
            marker="o" if few else None,
            ms=3,
            color="tab:purple",
            alpha=0.45,
            label="one frame",
        )
        smooth = np.where(np.isnan(series), np.nan, rolling_mean(series, window))  # keep gaps
        ax.plot(time, smooth, lw=1.6, color="tab:purple", label=f"{window}-frame rolling mean")
        note = f", {missing} frames undefined" if missing else ""
        ax.set_title(
            f"{label}: mean {_number(_nanmean(series), 3)} ({better}){note}",
            fontsize=10,
            loc="left",
        )
        ax.set_ylabel(label.split(" (")[0])
        if missing == len(series):
            ax.text(
                0.5,
                0.5,
                "no values (all null)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="gray",
            )
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=9)
    axes[-1].set_xlabel(TIME_LABEL)
    region = "whole square" if layout_and_heads(metrics)[0] == "full" else "lower triangle"
    figure.suptitle(f"Pixel-space quality of each frame (rendered attention vs target, {region})")
    return figure


# --- all of them ----------------------------------------------------------------------------


def _save(figure: Figure, path: Path) -> None:
    write_atomic(path, lambda temporary: figure.savefig(temporary, format="png"))


def write_all_figures(frames_dir: Path, out_dir: Path) -> list[Path]:
    """Draw every figure of a run in `frames_dir` into `out_dir` as PNGs; return their paths."""
    folder = FramesDir(Path(frames_dir))
    metrics = load_metrics(folder)
    builders: dict[str, Callable[[], Figure]] = {
        "loss_timeline.png": lambda: loss_timeline(metrics),
        "loss_histogram.png": lambda: loss_histogram(metrics),
        "target_vs_output.png": lambda: target_vs_output(metrics, folder),
        "cumulative_quality.png": lambda: cumulative_quality(metrics),
        "best_worst.png": lambda: best_worst(metrics, folder),
        "hero_frame.png": lambda: hero_frame(metrics, folder),
        "pixel_metrics.png": lambda: pixel_metrics_timeline(metrics),
    }
    assert tuple(builders) == FIGURE_FILES
    paths = []
    for name, build in builders.items():
        path = Path(out_dir) / name
        _save(build(), path)
        paths.append(path)
    return paths
