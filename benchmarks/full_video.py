"""Benchmark: optimize.py's own run on a music video, every frame judged through transformers.

    uv run python benchmarks/full_video.py                             # 330 frames (22 s)
    uv run python benchmarks/full_video.py --video bad-apple-length    # 3,286 frames (219 s)
    uv run python benchmarks/full_video.py --device cuda --chunk-size 512
    uv run python benchmarks/full_video.py --label steps300 --set steps=300   # another policy
    uv run python benchmarks/full_video.py --frames 130 --size 64 --out a.json --strip a.png

What a user runs, on a GPT-2-XL-shaped stand-in checkpoint (`checkpoints.write_checkpoints`,
--checkpoint default|hard). The frames of `clips.dance_video`, a shadow-art music video (hard
cuts between black-on-white and white-on-black scenes, fades, fast dancers, fine detail), are
written as PNGs and encoded to an H.264 mp4 by `video.encode_video` (assemble.py's encoder:
yuv420p, CRF 18, so the targets carry a real encode's small losses); `download.download` turns
the mp4 into the frames folder (targets/frame_00001.png ..., meta.json) as download.py does.
Then `optimize.optimize` runs on it at its defaults (--chunk-size, --device and any --set
NAME=VALUE are passed through as its keywords), timed as a whole: solving, rendering the PNGs
and writing the files, what a user waits for.

Every frame is then judged from what optimize saved: its embeddings are read back from the chunk
files (`chunks.saved_inputs_embeds`), transformers' own GPT2Model runs them (`verify`), and its
attention is drawn as optimize draws it (`layout.layout_picture`, the run's layout, render and
blur) and compared with the target PNG (`layout.layout_metrics`). Prints, and writes to --out
under --label (a file keeps one record per label, so two policies can be compared):

    seconds       the optimize() call; metrics.json's total_seconds (solve + render + write); the
                  solver's own (the sum of its per-frame "seconds")
    mae, corr     mean, p99 and worst mae (which frame), frames above mae MAE_BAD, mean corr
    worst_frames  the 10 worst, with frames since the last hard cut and their scene
    policy        metrics.json's solver settings (less this run's paths), with the display and
                  the keywords given to optimize() beside it
    solver_steps  the steps of every frame together (the work, whatever the machine's load)
    per_frame     every frame's mae and corr (1-based frame numbers, as in frames/)

and a strip (--strip) of the frames around the worst cut: targets above, attention below.
"""

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.chunks import saved_inputs_embeds  # noqa: E402
from badapple.download import download  # noqa: E402
from badapple.family import family_of  # noqa: E402
from badapple.layout import layout_metrics, layout_picture  # noqa: E402
from badapple.metrics import mean_metrics  # noqa: E402
from badapple.optimize import optimize  # noqa: E402
from badapple.settings import pick_device  # noqa: E402
from badapple.storage import FRAME_PATTERN, FramesDir, read_target_png, write_png  # noqa: E402
from badapple.verify import model_through_layer, transformers_attention  # noqa: E402
from badapple.video import encode_video  # noqa: E402
from fixtures.checkpoints import CHECKPOINTS, write_checkpoints  # noqa: E402
from fixtures.clips import (  # noqa: E402
    BAD_APPLE_FRAMES,
    DANCE_FRAMES,
    FPS,
    dance_video_cuts,
    dance_video_scenes,
    iter_dance_video,
)
from fixtures.real_weights import minilm_checkpoint, smollm2_checkpoint  # noqa: E402

RESULTS = ROOT / "docs" / "benchmarks" / "full_video.json"
STRIP = ROOT / "docs" / "full_video_cut_strip.png"
VIDEOS = {"dance": DANCE_FRAMES, "bad-apple-length": BAD_APPLE_FRAMES}  # default frame counts
MAE_BAD = 0.03  # a frame above this mae is counted as visibly off
WORST_SHOWN = 10
STRIP_AFTER = 6  # frames of the strip from the cut on, after the one frame before it
SCORE_BATCH = 16  # frames through transformers at once
# real trained checkpoints, by name: folder -> path
REAL = {"smollm2": smollm2_checkpoint, "minilm": lambda _: minilm_checkpoint()}
RUN_PATHS = ("video", "model", "model_commit")  # metrics.json settings that name this run's files


def write_frames_folder(
    frames: int, size: int, seed: int, work: Path, frames_dir: Path
) -> tuple[dict, float]:
    """The clip as download.py leaves it: its frames as PNGs -> `video.encode_video` (H.264) ->
    `download.download` -> frames_dir (targets/, meta.json). Returns download's meta and the
    mean |target - clip| that the encode left (a real video's compression, in small)."""
    pngs = work / "clip_frames"
    for number, frame in enumerate(iter_dance_video(frames, size, seed), start=1):
        write_png(pngs / (FRAME_PATTERN % number), _gray8(frame))
    mp4 = work / "dance_video.mp4"
    encode_video(pngs / FRAME_PATTERN, mp4, fps=FPS, scale=1, audio=None)
    shutil.rmtree(pngs)
    with warnings.catch_warnings():  # it has no soundtrack, and says so: we know
        warnings.filterwarnings("ignore", message=".*has no audio track.*")
        meta = download(input=str(mp4), frames_dir=str(frames_dir), fps=FPS, size=size)
    if meta["frame_count"] != frames:
        raise RuntimeError(f"download made {meta['frame_count']} frames of {frames}")
    folder = FramesDir(frames_dir)
    loss = [
        float(np.abs(read_target_png(folder.target_png(number), 1)[0] - _gray8(frame) / 255).mean())
        for number, frame in enumerate(iter_dance_video(frames, size, seed), start=1)
    ]
    return meta, float(np.mean(loss))


def _gray8(frame: np.ndarray) -> np.ndarray:
    return np.round(frame * 255).astype(np.uint8)


def held_frames(folder: FramesDir, metrics: dict) -> dict[int, Path]:
    """Each frame of metrics.json -> the chunk file its record names."""
    return {
        record["frame"]: folder.embeddings / record["embeddings"] for record in metrics["frames"]
    }


def rendered_frames(folder: FramesDir, metrics: dict, model, frames: list[int], device):
    """Yield (frame, picture [C, T, T], target [C, T, T]) for `frames`: transformers' attention
    of the saved embeddings at the played layer (`model` runs blocks 0..layer), drawn as
    optimize.py draws it (the layout, heads, render and blur that metrics.json's settings and
    display record)."""
    settings, blur = metrics["settings"], metrics["display"]["blur"]
    layout, render, heads = settings["layout"], settings["render"], tuple(settings["heads"])
    channels, layer = settings["channels"], settings.get("layer", 0)
    causal = family_of(settings.get("model_type", "gpt2"), settings["model"]).causal
    for _, chunk, embeddings in saved_inputs_embeds(held_frames(folder, metrics), frames):
        for first in range(0, len(chunk), SCORE_BATCH):
            batch = chunk[first : first + SCORE_BATCH]
            rows = embeddings[first : first + SCORE_BATCH].to(device)  # [b, T', d]
            attention = transformers_attention(model, rows, heads, layer).float().cpu().numpy()
            for frame, maps in zip(batch, attention, strict=True):  # [H, T', T']
                picture = layout_picture(maps, layout, render, blur, causal)
                yield frame, picture, read_target_png(folder.target_png(frame), channels)


def scene_of(index: int, scenes) -> dict:
    """Where 0-based frame `index` is: its scene, frames into it, frames since the last cut."""
    scene = next(s for s in reversed(scenes) if s.start <= index)
    cuts = [s.start for s in scenes if s.transition == "cut" and s.start <= index]
    return {
        "scene": f"{scene.kind} {scene.polarity}",
        "entered_by": scene.transition,
        "into_scene": index - scene.start,
        "since_cut": index - cuts[-1] if cuts else None,
    }


def summary(per_frame: dict[int, dict]) -> dict:
    frames = sorted(per_frame)
    mae = np.array([per_frame[f]["mae"] for f in frames])
    worst = frames[int(mae.argmax())]
    means = mean_metrics([{**per_frame[f], "loss": None} for f in frames])
    return {
        "frames": len(frames),
        "mean_mae": float(mae.mean()),
        "p99_mae": float(np.percentile(mae, 99)),
        "worst_mae": float(mae.max()),
        "worst_frame": worst,
        f"frames_above_{MAE_BAD}": int((mae > MAE_BAD).sum()),
        "mean_corr": means["corr"],
        "mean_iou": means["iou"],
    }


def strip_frames(
    per_frame: dict[int, dict], cuts: list[int], frame_count: int
) -> tuple[int | None, list[int]]:
    """The worst hard cut (its 0-based index) and the strip's frames (1-based): the one before
    it and STRIP_AFTER from it on. The worst cut has the worst mae in those frames; a video
    without cuts shows its worst frame and those after it (cut None)."""

    def worst_after(cut: int) -> float:
        return max(per_frame[i + 1]["mae"] for i in range(cut, min(cut + STRIP_AFTER, frame_count)))

    if not cuts:
        worst = max(per_frame, key=lambda frame: per_frame[frame]["mae"])
        return None, list(range(worst, min(worst + STRIP_AFTER, frame_count + 1)))
    cut = max(cuts, key=worst_after)
    return cut, list(
        range(cut, min(cut + STRIP_AFTER, frame_count) + 1)
    )  # frame cut is index cut - 1


def draw_strip(path: Path, shown, per_frame: dict[int, dict], cut: int | None) -> None:
    """Targets above, attention pictures below (gray), each labelled with its frame number, its
    place relative to the cut and its mae. shown: [(frame, picture, target)], [C, T, T] each."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.9 * len(shown), 4.3), dpi=110, layout="constrained")
    axes = figure.subplots(2, len(shown), squeeze=False)
    for column, (frame, picture, target) in enumerate(shown):
        title = f"frame {frame}"
        if cut is not None:
            offset = frame - 1 - cut
            title += "\nbefore the cut" if offset < 0 else f"\ncut +{offset}"
        for row, image in enumerate((target, picture)):
            ax = axes[row, column]
            ax.imshow(
                image[0] if len(image) == 1 else image.transpose(1, 2, 0),
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(title, fontsize=8)
        axes[1, column].set_xlabel(f"mae {per_frame[frame]['mae']:.3f}", fontsize=8)
    axes[0, 0].set_ylabel("target", fontsize=9)
    axes[1, 0].set_ylabel("attention", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def parse_settings(pairs: list[str]) -> dict:
    """--set NAME=VALUE ... as optimize() keywords: VALUE read as JSON where it is (300, 0.01,
    true, null, [0, 1]), else as text; NAME with - or _."""
    options = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals:
            raise SystemExit(f"--set {pair}: expected NAME=VALUE, e.g. --set steps=300")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options[name.strip().replace("-", "_")] = tuple(value) if isinstance(value, list) else value
    return options


def save_record(path: Path, record: dict) -> list[dict]:
    """Add `record` to the JSON at `path`, replacing the one with its label; returns them all."""
    records = []
    if path.exists():
        try:
            records = json.loads(path.read_text()).get("records", [])
        except (json.JSONDecodeError, AttributeError):
            print(f"warning: {path} is not a results file; starting it afresh", file=sys.stderr)
    records = [r for r in records if r.get("label") != record["label"]] + [record]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": records}, indent=1) + "\n")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--video",
        choices=list(VIDEOS),
        default="dance",
        help="dance: 330 frames (22 s) of clips.dance_video; bad-apple-length: "
        f"{BAD_APPLE_FRAMES} frames (219 s) of it",
    )
    parser.add_argument("--frames", type=int, help="frames of the video (default: --video's)")
    parser.add_argument("--size", type=int, default=256, help="frame side (even: H.264 4:2:0)")
    parser.add_argument("--seed", type=int, default=0, help="of the video")
    parser.add_argument(
        "--checkpoint",
        choices=(*REAL, *CHECKPOINTS),
        default="smollm2",
        help="smollm2: SmolLM2-135M-Instruct's real trained weights (fixtures.real_weights); "
        "minilm: all-MiniLM-L6-v2's (a BERT: the whole square); "
        "default, hard: GPT-2-XL-shaped random stand-ins",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="any local checkpoint folder, in place of --checkpoint's (e.g. a stand-in of "
        "benchmarks/families.py: write_stand_in, spread_as_trained)",
    )
    parser.add_argument("--device", default="auto", help="optimize()'s: auto, cpu, cuda or mps")
    parser.add_argument("--chunk-size", type=int, default=64, help="optimize()'s")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another optimize() keyword, e.g. --set steps=300 (repeatable)",
    )
    parser.add_argument("--label", default="default", help="the record's name in --out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--strip", type=Path, default=STRIP, help="PNG of the worst cut")
    parser.add_argument("--keep", type=Path, help="keep the work (frames folder, mp4) here")
    args = parser.parse_args()
    frame_count = args.frames or VIDEOS[args.video]
    if args.size % 2 or args.size < 8:
        parser.error(f"--size {args.size}: need an even size of at least 8 (H.264 4:2:0)")
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep} is not empty: a run there would resume, not run")
    options = {"device": args.device, "chunk_size": args.chunk_size, **parse_settings(args.set)}
    cuts = dance_video_cuts(frame_count, args.seed)  # 0-based: frame number cut + 1
    scenes = dance_video_scenes(frame_count, args.seed)
    print(
        f"{frame_count} frames ({frame_count / FPS:.0f} s) of dance_video {args.size}x"
        f"{args.size}, seed {args.seed}: {len(scenes)} scenes, {len(cuts)} hard cuts; "
        f"checkpoint {args.model or args.checkpoint}, {torch.get_num_threads()} CPU threads"
    )

    with tempfile.TemporaryDirectory() as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        if args.model:
            checkpoint = args.model
        elif args.checkpoint in REAL:
            checkpoint = REAL[args.checkpoint](work / "checkpoints" / args.checkpoint)
        else:
            checkpoint = write_checkpoints(work / "checkpoints", (args.checkpoint,))[
                args.checkpoint
            ]
        started = time.perf_counter()
        frames_dir = work / "frames"
        _, encode_mae = write_frames_folder(frame_count, args.size, args.seed, work, frames_dir)
        download_seconds = time.perf_counter() - started
        print(f"frames folder in {download_seconds:.1f} s (encode mae {encode_mae:.4f})")

        device = pick_device(args.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        metrics = optimize(model=str(checkpoint), frames_dir=str(frames_dir), **options)
        optimize_seconds = time.perf_counter() - started
        peak_gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

        started = time.perf_counter()
        folder = FramesDir(frames_dir)
        layer = metrics["settings"]["layer"]
        model = model_through_layer(open_checkpoint(str(checkpoint)), layer).to(device)
        numbers = list(range(1, frame_count + 1))
        per_frame = {}
        for frame, picture, target in rendered_frames(folder, metrics, model, numbers, device):
            per_frame[frame] = layout_metrics(picture, target, metrics["settings"]["layout"])
        strip_cut, shown_frames = strip_frames(per_frame, cuts, frame_count)
        shown = list(rendered_frames(folder, metrics, model, shown_frames, device))
        draw_strip(args.strip, sorted(shown, key=lambda item: item[0]), per_frame, strip_cut)
        score_seconds = time.perf_counter() - started

    records = {record["frame"]: record for record in metrics["frames"]}
    solver_seconds = sum(records[f]["seconds"] for f in numbers)
    result = summary(per_frame)
    worst = sorted(numbers, key=lambda f: -per_frame[f]["mae"])[:WORST_SHOWN]
    record = {
        "label": args.label,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "video": {
            "clip": "fixtures.clips.dance_video",
            "frames": frame_count,
            "size": args.size,
            "seed": args.seed,
            "fps": FPS,
            "cuts": [cut + 1 for cut in cuts],  # 1-based frame numbers, as in frames/
            "scenes": [{**asdict(s), "start": s.start + 1} for s in scenes],
            "frames_folder": "PNGs -> video.encode_video (H.264 yuv420p CRF 18) -> "
            "download.download",
            "encode_mae": encode_mae,
        },
        "checkpoint": str(args.model) if args.model else args.checkpoint,
        "device": metrics["device"],
        "cpu_threads": torch.get_num_threads(),
        "optimize_keywords": {
            k: list(v) if isinstance(v, tuple) else v for k, v in options.items()
        },
        # what decides the embeddings, less this run's paths: compare two records by it
        "policy": {k: v for k, v in metrics["settings"].items() if k not in RUN_PATHS},
        "settings": metrics["settings"],
        "display": metrics["display"],
        "seconds": {
            "optimize_call": optimize_seconds,
            "optimize_call_per_frame": optimize_seconds / frame_count,
            "metrics_total": metrics.get("total_seconds"),
            "solver": solver_seconds,
            "solver_per_frame": solver_seconds / frame_count,
            "frames_folder": download_seconds,
            "scoring": score_seconds,
        },
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_gib": peak_gpu / 2**30 if peak_gpu is not None else None,
        "summary": result,
        # how far optimize's own records (its forward, not transformers') are from ours
        "max_mae_difference_from_metrics_json": max(
            abs(records[f]["mae"] - per_frame[f]["mae"]) for f in numbers
        ),
        # how each frame started, where optimize records it ("warm", "cold", ...)
        "starts": dict(Counter(str(records[f]["start"]) for f in numbers if "start" in records[f])),
        # the solver's steps of every frame together, both solves of a frame solved twice: the
        # work a policy asks for, whatever else the machine was doing
        "solver_steps": sum(int(records[f].get("steps", 0)) for f in numbers),
        "worst_frames": [
            {
                "frame": f,
                "mae": per_frame[f]["mae"],
                "corr": per_frame[f]["corr"],
                **scene_of(f - 1, scenes),
                **{key: records[f][key] for key in ("start", "steps") if key in records[f]},
            }
            for f in worst
        ],
        "strip": {
            "path": str(args.strip),
            "frames": shown_frames,
            "cut": None if strip_cut is None else strip_cut + 1,  # the frame after the cut
        },
        "per_frame": {
            "frame": numbers,
            "mae": [round(per_frame[f]["mae"], 6) for f in numbers],
            "corr": [
                None if per_frame[f]["corr"] is None else round(per_frame[f]["corr"], 6)
                for f in numbers
            ],
        },
    }
    seconds = record["seconds"]
    print()
    print(
        f"optimize(): {optimize_seconds:.1f} s for {frame_count} frames, "
        f"{seconds['optimize_call_per_frame']:.4f} s/frame (solving, rendering, writing); "
        f"solver alone {solver_seconds:.1f} s, {seconds['solver_per_frame']:.4f} s/frame"
    )
    print(
        f"mae mean {result['mean_mae']:.4f}, p99 {result['p99_mae']:.4f}, worst "
        f"{result['worst_mae']:.4f} (frame {result['worst_frame']}); "
        f"{result[f'frames_above_{MAE_BAD}']} frames above {MAE_BAD}; mean corr "
        + (f"{result['mean_corr']:.4f}" if result["mean_corr"] is not None else "-")
    )
    print(f"worst {len(worst)} frames:")
    print("  frame    mae   corr  since cut  scene")
    for row in record["worst_frames"]:
        since = "-" if row["since_cut"] is None else f"{row['since_cut']:+d}"
        corr = "     -" if row["corr"] is None else f"{row['corr']:6.3f}"
        start = f", started {row['start']}" if "start" in row else ""
        print(
            f"  {row['frame']:5d} {row['mae']:6.4f} {corr} {since:>10}  {row['scene']}, "
            f"{row['into_scene']} frames in (entered by {row['entered_by']}){start}"
        )
    if record["starts"]:
        print("starts: " + ", ".join(f"{n} {kind}" for kind, n in record["starts"].items()))
    steps = record["solver_steps"]
    print(f"solver steps: {steps} ({steps / frame_count:.0f} a frame)")
    all_records = save_record(args.out, record)
    print(f"wrote {args.out} (label {args.label!r}; {len(all_records)} records) and {args.strip}")
    if len(all_records) > 1:
        print("  label                 frames  s/frame  solver s/f  mean mae  p99 mae  >0.03")
        for other in all_records:
            s, t = other["summary"], other["seconds"]
            print(
                f"  {other['label'][:20]:20} {s['frames']:7d} {t['optimize_call_per_frame']:8.4f} "
                f"{t['solver_per_frame']:11.4f} {s['mean_mae']:9.4f} {s['p99_mae']:8.4f} "
                f"{s[f'frames_above_{MAE_BAD}']:6d}"
            )


if __name__ == "__main__":
    main()
