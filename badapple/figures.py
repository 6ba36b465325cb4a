"""The figures of plot.py: each function builds one matplotlib Figure from `metrics.json`.

The functions build `matplotlib.figure.Figure` objects directly, never through pyplot, so no
global state or GUI backend is involved; `write_all_figures` saves a run's figures as PNGs.

`metrics` is the dict optimize.py writes to `frames/output/metrics.json`: `fps`, `args`, and
`frames`, one entry per frame sorted by frame number (1-based) with `loss` and the pixel
figures `mae`, `iou`, `corr` (null where undefined, e.g. an all-black target). A frame's time
in the video is (frame - 1) / fps seconds. `layout` says what the maps show: "half" (the
original's: the lower triangle of one head, scored there) or "full" (`heads` A below the
diagonal and B transposed above it, scored on the whole square); runs from before full frames
recorded none and are half.

The figures judge a run by its pixel figures, corr first: they compare what the eye sees with
the target, whatever the render. The loss is only comparable with the original's where it is
the original's (`loss_kind` "original: ...", render "zscore"), so only such runs get the loss
figures. Runs from before `render` and `loss_kind` existed are zscore runs with that loss.
Colour runs (`channels` 3) have RGB targets and RGB maps with no colormap.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from badapple.errors import UserError
from badapple.storage import (
    FramesDir,
    read_json,
    read_rgb_png,
    read_target_png,
    write_atomic,
)

DPI = 120  # pixels per inch of the PNGs: an 11-inch-wide figure is 1320 px
ROLLING_SECONDS = 1.0  # window of the rolling mean on the timelines, in video seconds
CORR_MARKS = (0.9, 0.95)  # shares of frames at least this correlated, written out
GRID_FRAMES = 6  # frames in the target-vs-output grid, evenly spread over the video
BEST_WORST = 4  # frames in each half of the best/worst figure
# A hero target must show shapes, not a near-uniform screen: a black/white picture has
# std sqrt(p(1 - p)), so 0.25 asks for at least ~7% of the minority colour.
HERO_MIN_STD = 0.25
# ... and a figure, not a screen split in two: the outline of its light parts (`outline_length`)
# at least this many frame widths long. A straight split of the frame, at any angle, has an
# outline of one width at most; a disc half the frame wide ~1.4; a dancer two or more.
HERO_MIN_OUTLINE = 1.5

# Every run gets the pixel figures, in the order to read them; only runs whose loss is the
# original's get the loss figures too (see `figure_files`).
PIXEL_FIGURES = (
    "pixel_metrics.png",
    "cumulative_quality.png",
    "best_worst.png",
    "target_vs_output.png",
    "hero_frame.png",
)
LOSS_FIGURES = ("loss_timeline.png", "loss_histogram.png")
# Runs that measured the display atlas (metrics.json's "display_atlas") get its heatmap too.
ATLAS_FIGURE = "display_atlas.png"

# What a level of the map means, for the colorbar: each render maps attention to [0, 1] its way.
LEVEL_LABELS = {
    "sink": "attention relative to the row's sink (0 none, 1 as much as the sink)",
    "zscore": "attention (row z-score, 1st–99th percentile → 0–1)",
}
LOSS_LABEL = "loss per frame (logit-space MSE, nats²)"
TIME_LABEL = "video time (s)"


# --- reading metrics ------------------------------------------------------------------------


def setting(metrics: dict, name: str, default=None):
    """One setting of the run. metrics.json keeps each once: under "settings" what decided the
    embeddings, under "display" how they are drawn."""
    for group in (metrics.get("settings", {}), metrics.get("display", {})):
        if name in group:
            return group[name]
    return default


def frame_rate(metrics: dict) -> float | None:
    """The video's frames per second, from the targets' record in the settings."""
    return (setting(metrics, "video") or {}).get("fps")


def load_metrics(frames_dir: FramesDir) -> dict:
    """The metrics of a run, checked for the fields the figures use."""
    path = frames_dir.metrics
    metrics = read_json(path)
    if metrics is None:
        raise UserError(f"no metrics in {path}; run optimize.py first")
    frames = metrics.get("frames") if isinstance(metrics, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path} lists no frames; run optimize.py first")
    fps = frame_rate(metrics)
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


def has_original_loss(metrics: dict) -> bool:
    """Whether `loss` is the original's logit-space loss (render zscore; older runs too)."""
    return metrics.get("loss_kind", "original").startswith("original")


def figure_files(metrics: dict) -> list[str]:
    """The PNGs `write_all_figures` draws for this run, in the order to read them."""
    loss = list(LOSS_FIGURES) if has_original_loss(metrics) else []
    return list(PIXEL_FIGURES) + loss + ([ATLAS_FIGURE] if metrics.get("display_atlas") else [])


def is_colour(metrics: dict) -> bool:
    """Whether the run fits RGB targets (one map per channel, shown without a colormap)."""
    return setting(metrics, "channels", 1) == 3


def values(metrics: dict, key: str) -> np.ndarray:
    """One per-frame figure, float64 [frames], NaN where it is null or absent."""
    return np.array([np.nan if f.get(key) is None else float(f[key]) for f in metrics["frames"]])


def seconds(metrics: dict) -> np.ndarray:
    """Each frame's time in the video, float64 [frames]."""
    numbers = np.array([f["frame"] for f in metrics["frames"]], dtype=np.float64)
    return (numbers - 1) / frame_rate(metrics)


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
    return max(1, round(frame_rate(metrics) * ROLLING_SECONDS))


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def _nanmean(series: np.ndarray) -> float:
    return float(np.nanmean(series)) if np.any(~np.isnan(series)) else float("nan")


# --- pictures -------------------------------------------------------------------------------


def _target(metrics: dict, frames_dir: FramesDir, frame: int) -> np.ndarray:
    """The target picture in [0, 1], float32: gray [size, size], or RGB [size, size, 3] for a
    colour run."""
    target = read_target_png(frames_dir.target_png(frame), 3 if is_colour(metrics) else 1)
    return target[0] if len(target) == 1 else target.transpose(1, 2, 0)  # [C, T, T] -> image


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
    return setting(metrics, "layout", "half"), list(setting(metrics, "heads", [0]))


def _heads_label(metrics: dict) -> str:
    """Which heads a map shows: "head 0", "heads 0 + 1 transposed" (full frame); a colour run
    has one head (or pair) per channel, R, G, B in order."""
    layout, heads = layout_and_heads(metrics)
    channels = 3 if is_colour(metrics) else 1
    first, second = heads[:channels], heads[channels : 2 * channels]
    names = ", ".join(str(head) for head in first)
    if layout == "full" and not second:  # bidirectional: each head the whole square
        return f"heads {names}, whole square" if channels > 1 else f"head {names}, whole square"
    if layout == "full":
        return f"heads {names} + {', '.join(str(head) for head in second)} transposed"
    return f"heads {names}" if channels > 1 else f"head {names}"


def _layer(metrics: dict) -> str:
    """The played layer, for titles: "layer 0"; runs from before --layer played layer 0."""
    return f"layer {setting(metrics, 'layer', 0)}"


def _frame_title(metrics: dict, entry: dict) -> str:
    time = (entry["frame"] - 1) / frame_rate(metrics)
    return f"frame {entry['frame']} · {time:.1f} s"


# --- the figures: pixel figures first, they judge every run --------------------------------


def pixel_metrics_timeline(metrics: dict) -> Figure:
    """Correlation, IoU and MAE of every frame against video time; null values leave gaps."""
    time = seconds(metrics)
    window = _rolling_window(metrics)
    few = len(time) <= 60
    levels = "RGB levels" if is_colour(metrics) else "gray levels"
    rows = (
        ("corr", "Pearson correlation", "higher is better"),
        ("iou", "IoU (0–1)", "higher is better"),
        ("mae", f"MAE ({levels}, 0–1)", "lower is better"),
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
        note = f", {_frames(missing)} undefined" if missing else ""
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
    # The legend goes outside the axes, above the plots on the right: inside, it would hide the
    # top row's good frames (corr near 1) or the "no values" note.
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", fontsize=9)
    axes[-1].set_xlabel(TIME_LABEL)
    region = "whole square" if layout_and_heads(metrics)[0] == "full" else "lower triangle"
    figure.suptitle(
        f"Pixel-space quality of each frame (rendered {_layer(metrics)} attention vs target, "
        f"{region})"
    )
    return figure


def cumulative_quality(metrics: dict) -> Figure:
    """Share of frames whose corr is at least x, the share at each of CORR_MARKS written out.

    Frames without a corr (a uniform target) are left out and counted in the title. The shares
    sit in the legend, not in annotations beside the marks: marks 0.05 apart would stack two
    floating labels on top of each other."""
    corr = values(metrics, "corr")
    defined = np.sort(corr[~np.isnan(corr)])  # [n], ascending
    missing = len(corr) - len(defined)
    # Show at least 0.8..1, where the marks are, and every frame's corr, to a tenth.
    left = min(0.8, float(np.floor(defined[0] * 10) / 10)) if len(defined) else 0.8
    figure = _figure(8, 4.8)
    ax = figure.subplots()
    if len(defined):
        count = len(defined)
        share = 100 * (count - np.arange(count)) / count  # [n] % of frames with corr >= defined[i]
        ax.step(  # "pre": the share holds on (previous corr, this corr], then drops
            np.concatenate([[left], defined, [1.0]]),
            np.concatenate([[100.0], share, [0.0]]),
            where="pre",
            color="tab:blue",
            lw=1.8,
            label="frames with corr ≥ x",
        )
        for mark, color in zip(CORR_MARKS, ("tab:green", "tab:red"), strict=True):
            reach = float(np.mean(defined >= mark) * 100)
            ax.axvline(mark, color=color, ls="--", lw=1, label=f"corr ≥ {mark:.2f}: {reach:.0f}%")
            ax.axhline(reach, color=color, ls=":", lw=1)
        # Below the axes, one row: inside, it would hide the curve wherever the frames' corrs
        # happen to lie.
        figure.legend(loc="outside lower center", ncols=3)
    else:
        ax.text(
            0.5,
            0.5,
            "no frame has a corr (all null)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    # The note on frames left out gets its own line: on one line the title outgrows the figure.
    left_out = f"\n{_frames(missing)} without a corr (uniform target) left out" if missing else ""
    title = f"Share of frames by correlation with the target, {_frames(len(defined))}"
    ax.set_title(title + left_out)
    ax.set_xlabel("Pearson correlation x")
    ax.set_ylabel("frames with corr ≥ x (%)")
    ax.set_xlim(left, 1.0)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    return figure


def ranked_by_corr(metrics: dict) -> tuple[list[dict], str]:
    """The frames best first by corr, and "corr"; frames with a null corr are left out (a
    uniform target is neither good nor bad). When no frame has a corr: all of them best first
    by loss, and "loss"."""
    scored = [entry for entry in metrics["frames"] if entry.get("corr") is not None]
    if scored:
        return sorted(scored, key=lambda entry: -entry["corr"]), "corr"  # stable: ties by frame
    return sorted(metrics["frames"], key=lambda entry: entry["loss"]), "loss"


def best_worst(metrics: dict, frames_dir: FramesDir, count: int = BEST_WORST) -> Figure:
    """The `count` best and `count` worst frames by corr (`ranked_by_corr`), each target over
    its attention map."""
    ranked, key = ranked_by_corr(metrics)
    count = min(count, len(ranked))
    halves = (("best", ranked[:count]), ("worst", ranked[::-1][:count]))
    figure = _figure(max(5.0, 2.3 * count + 0.8), 10)
    axes = figure.subplots(4, count, squeeze=False)
    for half, (name, entries) in enumerate(halves):
        for column, entry in enumerate(entries):
            top, bottom = axes[2 * half, column], axes[2 * half + 1, column]
            _show(top, _target(metrics, frames_dir, entry["frame"]))
            _show(bottom, _attention(frames_dir, entry["frame"]))
            top.set_title(f"{_frame_title(metrics, entry)}\n{key} {entry[key]:.3f}", fontsize=10)
        axes[2 * half, 0].set_ylabel(f"{name}: target")
        axes[2 * half + 1, 0].set_ylabel(f"{name}: attention")
    figure.suptitle(
        f"{_layer(metrics).capitalize()}: the {count} best and {count} worst frames by {key}"
    )
    return figure


def target_vs_output(metrics: dict, frames_dir: FramesDir, count: int = GRID_FRAMES) -> Figure:
    """Targets over attention maps for `count` frames spread evenly over the video."""
    entries = metrics["frames"]
    spots = np.linspace(0, len(entries) - 1, min(count, len(entries)))
    picks = [entries[i] for i in sorted(set(spots.round().astype(int).tolist()))]
    figure = _figure(max(5.0, 2.3 * len(picks) + 0.6), 5.6)
    axes = figure.subplots(2, len(picks), squeeze=False)
    for column, entry in enumerate(picks):
        _show(axes[0, column], _target(metrics, frames_dir, entry["frame"]))
        _show(axes[1, column], _attention(frames_dir, entry["frame"]))
        axes[0, column].set_title(
            f"{_frame_title(metrics, entry)}\ncorr {_number(entry.get('corr'))}", fontsize=10
        )
    axes[0, 0].set_ylabel("target")
    axes[1, 0].set_ylabel("attention")
    figure.suptitle(
        f"Target vs {model_name(metrics)} {_layer(metrics)} attention, frames spread over the video"
    )
    return figure


def outline_length(picture: np.ndarray) -> float:
    """How long the outline of a picture's light parts is, in picture widths: its light pixels
    (>= mid-gray) with a dark 4-neighbour, over its width. [T, T] gray or [T, T, 3] RGB (their
    mean), in [0, 1]. A row or column of the outline counts one pixel a step, so a straight
    split is one width long whatever its angle."""
    gray = picture.mean(axis=-1) if picture.ndim == 3 else picture
    light = gray >= 0.5  # [T, T]
    outline = np.zeros_like(light)
    outline[1:] |= light[1:] & ~light[:-1]  # dark above
    outline[:-1] |= light[:-1] & ~light[1:]  # dark below
    outline[:, 1:] |= light[:, 1:] & ~light[:, :-1]  # dark on the left
    outline[:, :-1] |= light[:, :-1] & ~light[:, 1:]  # dark on the right
    return float(outline.sum()) / light.shape[1]


def pick_hero(metrics: dict, frames_dir: FramesDir) -> dict:
    """The frame to show large: the best by corr (`ranked_by_corr`) whose target shows a figure
    (not near-uniform, HERO_MIN_STD, and not a screen split in two, HERO_MIN_OUTLINE: such a
    frame plays at corr 1.00 and shows nothing of the video); else the best whose target is
    not near-uniform; else the best outright."""
    ranked, _ = ranked_by_corr(metrics)
    merit = {}  # frame -> 2: a figure, 1: shapes, 0: near-uniform
    for entry in ranked:  # targets read lazily: the first few usually show a figure
        target = _target(metrics, frames_dir, entry["frame"])
        shapes = target.std() >= HERO_MIN_STD
        figure = shapes and outline_length(target) >= HERO_MIN_OUTLINE
        if figure:
            return entry
        merit[entry["frame"]] = int(shapes)
    return max(ranked, key=lambda entry: merit[entry["frame"]])  # the first of the best merit


def hero_frame(metrics: dict, frames_dir: FramesDir) -> Figure:
    """One representative frame, large: the target beside the attention map it became."""
    entry = pick_hero(metrics, frames_dir)
    model = model_name(metrics)
    figure = _figure(12.5, 6.9)  # room under the map for its label, over it for two title lines
    left, right = figure.subplots(1, 2)
    _show(left, _target(metrics, frames_dir, entry["frame"]))
    left.set_title(f"target, {_frame_title(metrics, entry)}")
    right.imshow(_attention(frames_dir, entry["frame"]))
    # two lines: a long model name or six heads make one line wider than the axes
    right.set_title(f"{model} {_layer(metrics)}\n{_heads_label(metrics)}: attention weights")
    right.set_xlabel("key token position")
    right.set_ylabel("query token position")
    if not is_colour(metrics):  # a colour map is RGB itself, no colormap to explain
        figure.colorbar(
            # runs from before --colormap were drawn with magma
            ScalarMappable(Normalize(0, 1), cmap=setting(metrics, "colormap", "magma")),
            ax=right,
            shrink=0.85,
            label=LEVEL_LABELS[setting(metrics, "render", "zscore")],
        )
    loss = f" · loss {entry['loss']:.3f}" if has_original_loss(metrics) else ""
    figure.suptitle(
        f"Frame {entry['frame']}: corr {_number(entry.get('corr'))} · "
        f"IoU {_number(entry.get('iou'))} · MAE {_number(entry.get('mae'), 3)}{loss}",
        fontsize=14,
    )
    return figure


# --- the display atlas ----------------------------------------------------------------------


def display_atlas(metrics: dict) -> Figure:
    """Every head of every measured layer by its span (atlas.py: how far a typical score can
    move, in nats, log colour), the solved ones with their survey mae written in, the weak
    threshold on the colorbar and the played display outlined."""
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    atlas = metrics["display_atlas"]
    spans = np.array(
        [[np.nan if span is None else span for span in row] for row in atlas["span_nats"]]
    )  # [layers, heads]
    layers, heads = spans.shape
    measured = spans[np.isfinite(spans)]
    weak = atlas["weak_span_nats"]
    low, high = min(measured.min(), weak / 2), max(measured.max(), weak * 2)
    figure = _figure(min(3 + 0.42 * heads, 16), min(2 + 0.3 * layers, 16))
    ax = figure.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(
        np.ma.masked_invalid(spans), cmap=cmap, norm=LogNorm(low, high), aspect="auto"
    )
    bar = figure.colorbar(image, ax=ax, label="span of a typical score (nats)")
    bar.ax.axhline(weak, color="red", linewidth=2)
    bar.ax.text(0.5, weak, " weak", color="red", va="bottom", fontsize=8)
    for entry in atlas.get("survey", []):  # the solved displays: their mae on the survey frames
        for head in entry["heads"]:
            dark = spans[entry["layer"], head] < np.sqrt(low * high)  # viridis' dark half
            ax.text(
                head,
                entry["layer"],
                f"{entry['mae']:.4f}",
                ha="center",
                va="center",
                fontsize=7 if heads <= 16 else 5,
                color="white" if dark else "black",
            )
    played_layer, played_heads = setting(metrics, "layer", 0), setting(metrics, "heads", [0])
    for head in played_heads:
        ax.add_patch(
            Rectangle(
                (head - 0.5, played_layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2
            )
        )
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(0, heads, max(1, heads // 12)))
    ax.set_yticks(range(0, layers, max(1, layers // 16)))
    model = model_name(metrics)
    ax.set_title(
        f"{model}: display atlas ({len(measured)} heads measured, numbers: survey mae)\n"
        f"played: {_layer(metrics)}, {_heads_label(metrics)} (outlined)",
        fontsize=10,
    )
    return figure


def model_name(metrics: dict) -> str:
    """The played model as a title names it: a hub id as it is, a local checkpoint by its
    folder's name (its whole path would fill the title, and is nothing on another machine).
    A hub run records the commit it was pinned to, a local one none; runs from before --model
    played GPT-2."""
    model = setting(metrics, "model", "gpt2")
    if setting(metrics, "model_commit") is not None:
        return model
    return Path(model).name or model  # "." names no folder: as the user wrote it


# --- the loss figures: only where the loss is the original's --------------------------------


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
        label=f"rolling mean over {window} frames ({window / frame_rate(metrics):.1f} s)",
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
    # Above the axes, not inside: the worst frames are points at the top that it would hide.
    figure.legend(loc="outside upper right", ncols=3, fontsize=9)
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


# --- all of them ----------------------------------------------------------------------------


def _save(figure: Figure, path: Path) -> None:
    write_atomic(path, lambda temporary: figure.savefig(temporary, format="png"))


def write_all_figures(frames_dir: Path, out_dir: Path) -> list[Path]:
    """Draw the figures of a run in `frames_dir` (`figure_files`) into `out_dir` as PNGs; return
    their paths."""
    folder = FramesDir(Path(frames_dir))
    metrics = load_metrics(folder)
    builders: dict[str, Callable[[], Figure]] = {
        "pixel_metrics.png": lambda: pixel_metrics_timeline(metrics),
        "cumulative_quality.png": lambda: cumulative_quality(metrics),
        "best_worst.png": lambda: best_worst(metrics, folder),
        "target_vs_output.png": lambda: target_vs_output(metrics, folder),
        "hero_frame.png": lambda: hero_frame(metrics, folder),
        "loss_timeline.png": lambda: loss_timeline(metrics),
        "loss_histogram.png": lambda: loss_histogram(metrics),
        ATLAS_FIGURE: lambda: display_atlas(metrics),
    }
    assert tuple(builders) == PIXEL_FIGURES + LOSS_FIGURES + (ATLAS_FIGURE,)
    paths = []
    for name in figure_files(metrics):
        path = Path(out_dir) / name
        _save(builders[name](), path)
        paths.append(path)
    return paths
