"""Benchmark: colour video on three heads (six in full frame), true tone.

    uv run python benchmarks/colour.py                   # the table, the JSON and the strip
    uv run python benchmarks/colour.py --size 48 --checkpoints default  # a quick look

A colour frame is three pictures, R, G and B, each in [0, 1]: channel c plays on head c (half
frame), and in full frame the transposed channels play on heads 3..5, as optimize.py plays a
run of `download.py --color` targets. Always true tone (--render sink, contrast 6 nats): the
zscore render shows each row's pattern and not its level, so three heads would not mix into
the frame's colours.

Two kinds of clip, synthesised here with numpy (no files, deterministic in the seed), laid out
on a 256 x 256 stage and scaled to --size as `fixtures/clips.py` does, things moving a few
stage pixels a frame at its FPS:

    cartoon  flat saturated discs and rectangles (red, green, blue, yellow, magenta, white,
             black) drifting and turning over a smooth two-colour gradient
    photo    a synthetic stand-in for photographic footage, not real footage: a smooth random
             colour field (a few dozen large gaussian blobs of random colours, under a smooth
             random lighting, plus a faint fine grain of blurred noise), seen by a camera that
             pans slowly across it. It has photos' smooth gradients and mid tones everywhere,
             not their edges, textures or faces.

Everything else is benchmarks/solvers.py's: the same two GPT-2-XL-shaped stand-in checkpoints
(default and hard), the reduced solver at its defaults, batch k = frame k of every clip with
warm starts from batch k-1, and the pictures judged through transformers' own GPT2Model from
the solved inputs_embeds, rendered as optimize.py renders them. Prints a table and writes
benchmarks/results/colour.json, one row per checkpoint, layout and clip kind (and "all"):

    seconds_per_frame   wall time of the solver / frames (of the whole batch: the kinds are
                        solved together)
    mae, iou, corr      the RGB picture against the target over what the layout shows (the lower
                        triangle for half frame, the whole square for full frame), all channels
                        together, mean over frames
    corr_per_channel    corr of R, G and B each, mean over frames
    flicker             mean |change| between consecutive pictures minus the targets', there

The gray default (reduced/sink/half, one head) also runs, on the same clips' luma, for the cost
of colour: colour half-frame seconds per frame over gray's. With --picture (default
docs/colour_strip.png) it draws a strip of the last frame of the photo and the cartoon clip:
target | half frame | full frame, each rendered from transformers' attention, with that frame's
corr and mae.
"""

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter, map_coordinates

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import load_head  # noqa: E402
from badapple.layout import (  # noqa: E402
    channel_correlations,
    layout_metrics,
    token_count,
)
from badapple.metrics import mean_metrics  # noqa: E402
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS  # noqa: E402
from badapple.solvers import METHOD_DEFAULTS  # noqa: E402
from badapple.targets import DEFAULT_CONTRAST_NATS  # noqa: E402
from badapple.verify import model_through_layer  # noqa: E402
from benchmarks.solvers import (  # noqa: E402
    flicker,
    rendered_clip,
    solve_runs,
    write_checkpoints,
)
from fixtures.clips import FPS, STAGE  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "colour.json"
PICTURE = ROOT / "docs" / "colour_strip.png"
COLOUR_KINDS = ("photo", "cartoon")
METHOD, RENDER = "reduced", "sink"  # colour runs need the sink render
BLUR = DEFAULT_BLUR_SIGMA_PIXELS[RENDER]  # as optimize.py draws them: none
LAYOUT_HEADS = {"half": (0, 1, 2), "full": (0, 1, 2, 3, 4, 5)}  # R G B, then R G B transposed
GRAY_HEADS = (0,)
LUMA = (0.299, 0.587, 0.114)  # Rec. 601 luma: the gray frame of a colour one
CHANNELS = "RGB"

# --- the clips ------------------------------------------------------------------------------

_SHAPE_COLOURS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}


def _stage_coords(size: int) -> np.ndarray:
    """Pixel centres in stage units: [size]."""
    return (np.arange(size) + 0.5) * STAGE / size


def _swing(t: float, period: float, phase: float) -> float:
    return float(np.sin(2 * np.pi * t / period + phase))


def _cartoon(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Flat shapes, one of each colour and two more, over a two-colour gradient."""
    ys, xs = np.meshgrid(_stage_coords(size), _stage_coords(size), indexing="ij")  # [T, T]
    start, end = rng.uniform(0.15, 0.85, (2, 3))  # the gradient's two colours
    angle = rng.uniform(0, 2 * np.pi)
    along = ((xs - STAGE / 2) * np.cos(angle) + (ys - STAGE / 2) * np.sin(angle)) / STAGE
    ramp = np.clip(along / np.sqrt(2) + 0.5, 0, 1)[None]  # [1, T, T], 0..1 corner to corner
    background = start[:, None, None] * (1 - ramp) + end[:, None, None] * ramp  # [3, T, T]
    colours = list(_SHAPE_COLOURS.values())
    colours += [colours[i] for i in rng.choice(len(colours), 2, replace=False)]
    shapes = []
    for colour in colours:
        shapes.append(
            {
                "colour": np.array(colour)[:, None, None],
                "disc": bool(rng.random() < 0.5),
                "centre": rng.uniform(50, 206, 2),
                "half": rng.uniform(14, 40, 2),  # the disc's radius is half[0]
                # 30-50 px each way in 6-12 s: at most 3.5 px a frame
                "amplitude": rng.uniform(30, 50, 2),
                "period": rng.uniform(6, 12, 2),
                "phase": rng.uniform(0, 2 * np.pi, 2),
                "turn": rng.uniform(-0.3, 0.3),  # rad a second, for rectangles
                "angle": rng.uniform(0, np.pi),
            }
        )
    clip = np.empty((frames, 3, size, size), np.float32)
    for i in range(frames):
        t = i / FPS
        picture = background.copy()
        for shape in shapes:  # painted in order, later ones on top
            cx, cy = (
                shape["centre"][axis]
                + shape["amplitude"][axis] * _swing(t, shape["period"][axis], shape["phase"][axis])
                for axis in (0, 1)
            )
            dx, dy = xs - cx, ys - cy
            if shape["disc"]:
                inside = dx**2 + dy**2 <= shape["half"][0] ** 2
            else:
                a = shape["angle"] + shape["turn"] * t
                u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
                inside = (np.abs(u) <= shape["half"][0]) & (np.abs(v) <= shape["half"][1])
            picture = np.where(inside[None], shape["colour"], picture)
        clip[i] = picture
    return clip


_PAN = 64  # stage px the camera may move from the centre of the photo's world, each way


def _blob_field(rng: np.random.Generator, side: int, values: np.ndarray) -> np.ndarray:
    """A smooth random field [C, side, side] of len(values) large gaussian blobs, each of its
    value ([count, C]), blended by their weights to the 4th power: each blob keeps its own
    value near its centre and fades smoothly into its neighbours'."""
    count = len(values)
    grid = np.arange(side) + 0.5
    centres = rng.uniform(0, side, (count, 2))
    sigmas = rng.uniform(30, 70, count)[:, None, None]
    weights = np.exp(
        -2 * (grid[None, :, None] - centres[:, 0, None, None]) ** 2 / sigmas**2
        - 2 * (grid[None, None, :] - centres[:, 1, None, None]) ** 2 / sigmas**2
    )  # [count, side, side]: exp(-d^2 / 2 sigma^2) to the 4th
    weights += 1e-30
    return np.einsum("kc,kyx->cyx", values, weights) / weights.sum(0)[None]


def _photo(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A smooth colour world, 256 + 2 * 64 stage px a side, and a camera panning across it."""
    side = STAGE + 2 * _PAN
    count = 36
    hsv = np.stack(
        [rng.random(count), rng.uniform(0.3, 0.95, count), rng.uniform(0.55, 1.0, count)], -1
    )  # hue anywhere, mostly fairly saturated and bright
    colour = _blob_field(rng, side, hsv_to_rgb(hsv))  # [3, side, side]
    light = _blob_field(rng, side, rng.random((24, 1)))  # [1, side, side]: shade and light
    light = (light - light.min()) / (light.max() - light.min())
    grain = gaussian_filter(rng.standard_normal((4, side, side)), sigma=(0, 1.5, 1.5))
    grain /= grain.std(axis=(1, 2), keepdims=True)
    # the grain mostly in brightness, a little in colour
    world = colour * (0.5 + 0.7 * light) + 0.015 * grain[:1] + 0.006 * grain[1:]
    if size < STAGE:  # no aliasing of the grain when sampled at fewer pixels than the stage
        world = gaussian_filter(world, sigma=(0, 0.4 * STAGE / size, 0.4 * STAGE / size))
    world = np.clip(world, 0, 1)
    period, phase = rng.uniform(10, 14, 2), rng.uniform(0, 2 * np.pi, 2)
    coords = _stage_coords(size) - 0.5  # world pixel i has its centre at i + 0.5
    clip = np.empty((frames, 3, size, size), np.float32)
    for i in range(frames):
        t = i / FPS
        # a loop of 58 px radius in 10-14 s: at most 2.4 px a frame
        ox, oy = (_PAN + 0.9 * _PAN * _swing(t, period[a], phase[a]) for a in (0, 1))
        ys, xs = np.meshgrid(coords + oy, coords + ox, indexing="ij")
        for c in range(3):
            clip[i, c] = map_coordinates(world[c], [ys, xs], order=1, mode="nearest")
    return clip


_COLOUR_SCENES = {"photo": _photo, "cartoon": _cartoon}
assert tuple(_COLOUR_SCENES) == COLOUR_KINDS


def make_colour_clip(kind: str, frames: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """One colour clip: float32 [frames, 3, size, size] in [0, 1], the same for the same
    arguments."""
    if kind not in _COLOUR_SCENES:
        raise ValueError(f"unknown clip kind {kind!r}; the kinds are {', '.join(COLOUR_KINDS)}")
    if frames < 1 or size < 8:
        raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}")
    rng = np.random.default_rng([seed, 100 + COLOUR_KINDS.index(kind)])  # each kind its own
    clip = _COLOUR_SCENES[kind](rng, frames, size)
    return np.clip(clip, 0, 1).astype(np.float32)


def luma(clips: np.ndarray) -> np.ndarray:
    """The gray frames of colour ones: [..., 3, T, T] -> [..., 1, T, T]."""
    return np.einsum("c,...cyx->...yx", np.array(LUMA, np.float32), clips)[..., None, :, :]


# --- solving and scoring --------------------------------------------------------------------


def _summary(records: list[dict], flicker: list[float]) -> dict:
    means = mean_metrics([{**record, "loss": None} for record in records])
    per_channel = [
        [record["corr_per_channel"][c] for record in records]
        for c in range(len(records[0]["corr_per_channel"]))
    ]
    return {
        "mae": means["mae"],
        "iou": means["iou"],
        "corr": means["corr"],
        "corr_per_channel": [
            float(np.mean([v for v in values if v is not None]))
            if any(v is not None for v in values)
            else None
            for values in per_channel
        ],
        "flicker": float(np.mean(flicker)) if flicker else None,
    }


def score(
    model, heads: tuple[int, ...], clips: np.ndarray, embeddings: torch.Tensor, layout: str
) -> tuple[list[dict], list[tuple[np.ndarray, dict]]]:
    """Metrics of solved clips [K, N, C, T, T] through transformers: a summary per clip, and
    each clip's last picture [C, T, T] with its own metrics."""
    summaries, last = [], []
    for clip, clip_embeddings in zip(clips, embeddings, strict=True):  # [N, C, T, T], [N, T', d]
        pictures = rendered_clip(model, heads, clip_embeddings, RENDER, layout)
        records = [
            {
                **layout_metrics(picture, target, layout),
                "corr_per_channel": channel_correlations(picture, target, layout),
            }
            for picture, target in zip(pictures, clip, strict=True)
        ]
        change = flicker(pictures, clip, layout)
        summaries.append({"records": records, "flicker": [] if change is None else [change]})
        last.append((pictures[-1], records[-1]))
    return summaries, last


def _rows(
    base: dict, kinds: list[str], summaries: list[dict], seconds_per_frame: float
) -> list[dict]:
    """One row per clip kind and one for all of them."""
    groups = [(kind, [summary]) for kind, summary in zip(kinds, summaries, strict=True)]
    groups.append(("all", summaries))
    return [
        {
            **base,
            "clips": name,
            "seconds_per_frame": seconds_per_frame,
            **_summary(
                [record for s in group for record in s["records"]],
                [value for s in group for value in s["flicker"]],
            ),
        }
        for name, group in groups
    ]


# --- the strip ------------------------------------------------------------------------------


def draw_strip(path: Path, kinds: list[str], targets: np.ndarray, shown: dict) -> None:
    """target | half frame | full frame, a row per clip kind: `targets` [K, 3, T, T] and
    `shown` {layout: [(picture [3, T, T], metrics)] per kind}."""
    layouts = [layout for layout in ("half", "full") if layout in shown]
    columns = 1 + len(layouts)
    figure = Figure(figsize=(columns * 3.2, len(kinds) * 3.6), dpi=100, layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(kinds), columns, squeeze=False))
    for row, kind in enumerate(kinds):
        axes[row, 0].imshow(np.moveaxis(targets[row], 0, -1), vmin=0, vmax=1)
        axes[row, 0].set_title(f"target ({kind})", fontsize=10)
        for ax, layout in zip(axes[row, 1:], layouts, strict=True):
            picture, metrics = shown[layout][row]
            ax.imshow(np.moveaxis(np.clip(picture, 0, 1), 0, -1), vmin=0, vmax=1)
            ax.set_title(
                f"{layout} frame ({len(LAYOUT_HEADS[layout])} heads)\n"
                f"corr {metrics['corr']:.3f} · mae {metrics['mae']:.3f}",
                fontsize=10,
            )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


# --- the report -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames-per-clip", type=int, default=2, help="consecutive frames")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--checkpoints", default="default,hard", help="which stand-ins")
    parser.add_argument("--layouts", default="half,full", help="half and/or full")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--picture",
        default=str(PICTURE),
        help="the strip's PNG, from the first checkpoint ('' for none)",
    )
    args = parser.parse_args()
    names, layouts = args.checkpoints.split(","), args.layouts.split(",")
    kinds = list(COLOUR_KINDS)
    clips = np.stack([make_colour_clip(kind, args.frames_per_clip, args.size) for kind in kinds])
    gray = luma(clips)  # [K, N, 1, T, T]
    frames = clips.shape[0] * clips.shape[1]
    print(
        f"{len(kinds)} colour clips ({', '.join(kinds)}) x {args.frames_per_clip} frames of "
        f"{args.size}x{args.size}, {torch.get_num_threads()} CPU threads"
    )
    print(_header())

    results, shown, tokens = [], {}, token_count(args.size, RENDER)
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = write_checkpoints(Path(folder))
        for name in names:
            checkpoint = open_checkpoint(str(checkpoints[name]))
            model = model_through_layer(checkpoint)
            runs = [("gray", "half", GRAY_HEADS, gray)]
            runs += [("colour", layout, LAYOUT_HEADS[layout], clips) for layout in layouts]
            for channels, layout, heads, run_clips in runs:
                weights = load_head(checkpoint, heads, tokens)
                embeddings, seconds = solve_runs(weights, run_clips, METHOD, RENDER, layout)
                summaries, last = score(model, heads, run_clips, embeddings, layout)
                base = {"checkpoint": name, "frames": channels, "layout": layout}
                rows = _rows(base, kinds, summaries, seconds / frames)
                results += rows
                for row in rows:
                    print(_format_row(row), flush=True)
                if name == names[0] and channels == "colour":
                    shown[layout] = last

    print()
    print("\n".join([_header()] + [_format_row(row) for row in results]))
    ratios = {}
    for name in names:
        per_frame = {
            (row["frames"], row["layout"]): row["seconds_per_frame"]
            for row in results
            if row["checkpoint"] == name and row["clips"] == "all"
        }
        gray_time = per_frame[("gray", "half")]
        ratios[name] = {
            layout: per_frame[("colour", layout)] / gray_time
            for layout in layouts
            if ("colour", layout) in per_frame
        }
        for layout, ratio in ratios[name].items():
            print(
                f"{name}: colour {layout} frame takes {ratio:.2f}x the gray half frame's time "
                f"per frame ({per_frame[('colour', layout)]:.3f} s / {gray_time:.3f} s)"
            )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {**vars(args), "output": str(args.output)},
        "settings": {
            "method": METHOD,
            METHOD: asdict(METHOD_DEFAULTS[METHOD]),
            "render": RENDER,
            "contrast_nats": DEFAULT_CONTRAST_NATS,
            "blur": BLUR,
            "heads": {**LAYOUT_HEADS, "gray": GRAY_HEADS},
            "luma": LUMA,
            "clips": kinds,
        },
        "results": results,
        "time_ratio_to_gray_half": ratios,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")
    if args.picture and shown:
        draw_strip(Path(args.picture), kinds, clips[:, -1], shown)
        print(f"wrote {args.picture} (the last frame of each clip, checkpoint {names[0]})")


def _header() -> str:
    return (
        "checkpoint frames layout clips    s/frame    mae    iou   corr  "
        "corr R  corr G  corr B  flicker"
    )


def _format_row(row: dict) -> str:
    per_channel = row["corr_per_channel"] if row["frames"] == "colour" else [None] * 3
    channels = "  ".join(f"{v:6.3f}" if v is not None else "     -" for v in per_channel)
    return (
        f"{row['checkpoint']:10} {row['frames']:6} {row['layout']:6} {row['clips']:8} "
        f"{row['seconds_per_frame']:7.3f} {row['mae']:6.3f} {row['iou']:6.3f} "
        f"{row['corr']:6.3f}  {channels} "
        + (f"{row['flicker']:+8.4f}" if row["flicker"] is not None else "       -")
    )


if __name__ == "__main__":
    main()
