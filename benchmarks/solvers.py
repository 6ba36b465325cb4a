"""Benchmark: methods, renders and layouts side by side, on runs of consecutive shadow-art frames.

    uv run python benchmarks/solvers.py                  # the README's table (adam takes ~6 min)
    uv run python benchmarks/solvers.py --configs reduced/sink/half --frames-per-clip 2  # a look

Every configuration runs in this one process, at its method's default settings, on the same
frames and the same checkpoints: two GPT-2-XL-shaped random ones written here (the real GPT-2 XL
cannot be downloaded everywhere): transformers' default init, and a "hard" one whose query and
key weights are scaled by 0.6, so its reachable logit range is much smaller. A configuration is
METHOD/RENDER/LAYOUT, as optimize.py's --method, --render and --full-frame (heads 0 and 1) run
it; the target is the run's (`targets.aimed_target`, contrast 6 nats, the original's exact target
for adam under zscore). Frames are the clips of `fixtures/clips.py`, solved as optimize.py
solves a video: batch k holds the k-th frame of every clip, each frame after the first started
from its predecessor's solution where the method does warm starts.

Pictures are judged as a user would judge them: transformers' own GPT2Model runs the solved
inputs_embeds, and its attention is rendered as optimize.py renders it (default blur). Prints a
table and writes benchmarks/results/solvers.json:

    seconds_per_frame   wall time of the solver (forward, backward, lift) / frames
    mae, iou, corr      the picture against the target over what the layout shows (the lower
                        triangle for half frame, the whole square for full frame)
    flicker             mean |change| between consecutive pictures minus the targets', there
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from badapple.batch import solve_video_batch  # noqa: E402
from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import load_head  # noqa: E402
from badapple.layout import (  # noqa: E402
    SCORED_REGION,
    layout_metrics,
    layout_picture,
    token_count,
)
from badapple.look import Look  # noqa: E402
from badapple.metrics import mean_metrics  # noqa: E402
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS  # noqa: E402
from badapple.solvers import solver_settings  # noqa: E402
from badapple.targets import DEFAULT_CONTRAST_NATS  # noqa: E402
from badapple.verify import model_through_layer, transformers_attention  # noqa: E402
from badapple.warm import METHOD_WARM_STARTS, Predecessor, scene_cold_mae, solve_order  # noqa: E402
from fixtures.checkpoints import write_checkpoints  # noqa: E402
from fixtures.clips import BAD_APPLE_FRAMES, CLIP_KINDS, make_clip  # noqa: E402
from fixtures.real_weights import smollm2_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "solvers.json"
FULL_VIDEO_FRAMES = BAD_APPLE_FRAMES  # Bad Apple!! at 15 fps, for the projected full-run time
LAYOUT_HEADS = {"half": (0,), "full": (0, 1)}
CONFIGS = (
    "reduced/sink/half",  # the default
    "reduced/sink/full",
    "reduced/zscore/half",  # the default before true tone
    "reduced/zscore/full",
    "adam/zscore/half",  # the original
)


def contrast_of(method: str, render: str) -> float | None:
    """The target's contrast as optimize.py resolves it when --contrast is not given."""
    return None if (method, render) == ("adam", "zscore") else DEFAULT_CONTRAST_NATS


def solve_runs(
    weights, clips: np.ndarray, method: str, render: str, layout: str
) -> tuple[torch.Tensor, float]:
    """Solve clips [K, N, C, T, T] (C channels: 1 gray, 3 colour) as optimize.py solves a
    video of K runs of N frames: frame n of clip k is frame k·N + n + 1, batched by
    `warm.solve_order` in chunks of K (batch n = frame n of every clip, where the method
    does warm starts) and each batch solved by optimize.py's own `solve_video_batch` (warm.py's
    policy: which frames start from their predecessor, which are solved cold again). Returns
    embeddings [K, N, T', d] and the solver's seconds (rendering the pictures it judges by
    included, as in optimize.py)."""
    settings, warm = solver_settings(method, render), METHOD_WARM_STARTS[method]
    clip_count, frame_count, channels = clips.shape[:3]
    flat = torch.from_numpy(clips.reshape(clip_count * frame_count, *clips.shape[2:]))
    colormap = "gray" if channels == 1 else None  # the pictures are judged before it
    blur = DEFAULT_BLUR_SIGMA_PIXELS[render]
    look = Look(layout, render, contrast_of(method, render), blur, colormap, channels)

    def no_report(loss: float) -> None:
        pass

    def solve(batch: list[int], solved: dict[int, Predecessor], settings) -> tuple:
        pictures = flat[np.array(batch) - 1]  # frame f is flat[f - 1]
        predecessors = {f: solved[f - 1] for f in batch if f - 1 in solved}
        return solve_video_batch(
            method, weights, look, settings, warm, batch, pictures, predecessors, no_report
        ), pictures  # fmt: skip

    frames = list(range(1, clip_count * frame_count + 1))
    batches = solve_order(frames, clip_count, warm=warm is not None)
    # untimed: a process's first solve pays for torch's start-up, seconds at small sizes
    solve(batches[0], {}, replace(settings, steps=2, seeds=1))
    embeddings: dict[int, torch.Tensor] = {}  # every frame's [T', d]
    solved: dict[int, Predecessor] = {}  # the batch before's, where warm starts come from
    started = time.perf_counter()
    for batch in batches:
        done, pictures = solve(batch, solved, settings)
        solved = {  # as optimize.py keeps them: the policy's mae, their scene's cold solve
            frame: Predecessor(
                rows, picture, mae, scene_cold_mae({**record, "mae": mae}, solved.get(frame - 1))
            )
            for frame, rows, picture, record, mae in zip(
                batch, done.rows, pictures, done.records, done.policy_maes, strict=True
            )
        }
        embeddings.update({frame: solved[frame].embeddings for frame in batch})
    seconds = time.perf_counter() - started
    stacked = torch.stack([embeddings[frame] for frame in frames])  # [K·N, T', d]
    return stacked.reshape(clip_count, frame_count, *stacked.shape[1:]), seconds


def rendered_clip(
    model, heads: tuple[int, ...], embeddings: torch.Tensor, render: str, layout: str
) -> np.ndarray:
    """A solved clip as a user would see it: transformers' own attention of its inputs_embeds
    [N, T', d], rendered as optimize.py renders it -> pictures [N, C, T, T]."""
    attention = transformers_attention(model, embeddings, heads).numpy()  # [N, H, T', T']
    blur = DEFAULT_BLUR_SIGMA_PIXELS[render]
    return np.stack([layout_picture(maps, layout, render, blur) for maps in attention])


def flicker(pictures: np.ndarray, clip: np.ndarray, layout: str) -> float | None:
    """Mean |change| between consecutive pictures minus the targets', over what the layout
    shows: [N, C, T, T] each; None for a single frame."""
    if len(clip) < 2:
        return None
    shown_area = np.tri(clip.shape[-1], dtype=bool) if SCORED_REGION[layout] == "lower" else True
    shown = (np.abs(np.diff(pictures, axis=0)) * shown_area).mean()
    wanted = (np.abs(np.diff(clip, axis=0)) * shown_area).mean()
    return float(shown - wanted)


def score(
    model,
    heads: tuple[int, ...],
    clips: np.ndarray,
    embeddings: torch.Tensor,
    render: str,
    layout: str,
) -> dict:
    """Picture metrics and flicker of solved clips [K, N, C, T, T] through transformers, over
    every frame."""
    records, flickers = [], []
    for clip, clip_embeddings in zip(clips, embeddings, strict=True):  # [N, C, T, T], [N, T', d]
        pictures = rendered_clip(model, heads, clip_embeddings, render, layout)
        records += [layout_metrics(p, t, layout) for p, t in zip(pictures, clip, strict=True)]
        flickers.append(flicker(pictures, clip, layout))
    means = mean_metrics([{**record, "loss": None} for record in records])
    flickers = [value for value in flickers if value is not None]
    return {
        "mae": means["mae"],
        "iou": means["iou"],
        "corr": means["corr"],
        "flicker": float(np.mean(flickers)) if flickers else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames-per-clip", type=int, default=2, help="consecutive frames")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--kinds", default=",".join(CLIP_KINDS), help="clip kinds to use")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="METHOD/RENDER/LAYOUT list")
    parser.add_argument(
        "--checkpoints",
        default="smollm2,default,hard",
        help="smollm2: SmolLM2-135M-Instruct's real trained weights (its layer 0, the default "
        "display); default, hard: the GPT-2-XL-shaped stand-ins",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    kinds, configs = args.kinds.split(","), [c.split("/") for c in args.configs.split(",")]
    clips = np.stack([make_clip(kind, args.frames_per_clip, args.size) for kind in kinds])
    clips = clips[:, :, None]  # [K, N, 1, T, T]: one channel, gray
    frames = clips.shape[0] * clips.shape[1]
    print(
        f"{len(kinds)} clips x {args.frames_per_clip} frames of {args.size}x{args.size}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(_header())

    results = []
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = write_checkpoints(Path(folder))
        checkpoints["smollm2"] = smollm2_checkpoint(Path(folder) / "smollm2", layers=1)
        for name in args.checkpoints.split(","):
            checkpoint = open_checkpoint(str(checkpoints[name]))
            model = model_through_layer(checkpoint)
            for method, render, layout in configs:
                heads = LAYOUT_HEADS[layout]
                weights = load_head(checkpoint, heads, token_count(args.size, render))
                embeddings, seconds = solve_runs(weights, clips, method, render, layout)
                row = {
                    "checkpoint": name,
                    "config": f"{method}/{render}/{layout}",
                    "seconds_per_frame": seconds / frames,
                    **score(model, heads, clips, embeddings, render, layout),
                }
                results.append(row)
                print(_format_row(row), flush=True)

    print()
    print("\n".join([_header()] + [_format_row(row) for row in results]))
    for name in args.checkpoints.split(","):
        rows = {row["config"]: row for row in results if row["checkpoint"] == name}
        if {CONFIGS[0], "adam/zscore/half"} <= rows.keys():
            speedup = (
                rows["adam/zscore/half"]["seconds_per_frame"]
                / rows[CONFIGS[0]]["seconds_per_frame"]
            )
            print(f"{name}: {CONFIGS[0]} is {speedup:.0f}x faster per frame than adam/zscore/half")
    for row in results:
        if row["config"].startswith("reduced"):
            minutes = row["seconds_per_frame"] * FULL_VIDEO_FRAMES / 60
            print(
                f"{row['checkpoint']} {row['config']}: {FULL_VIDEO_FRAMES} frames projected at "
                f"{minutes:.1f} min (solver only; half the frames here start cold)"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {**vars(args), "output": str(args.output)},
        "settings": {
            f"{method}/{render}": asdict(solver_settings(method, render))
            for method, render, _ in configs
        },
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


def _header() -> str:
    return "checkpoint config               s/frame    mae    iou   corr  flicker"


def _format_row(row: dict) -> str:
    return (
        f"{row['checkpoint']:10} {row['config']:20} {row['seconds_per_frame']:8.3f} "
        f"{row['mae']:6.3f} {row['iou']:6.3f} {row['corr']:6.3f} "
        + (f"{row['flicker']:+8.4f}" if row["flicker"] is not None else "       -")
    )


if __name__ == "__main__":
    main()
