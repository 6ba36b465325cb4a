"""Benchmark: the solvers side by side, on runs of consecutive shadow-art frames.

    uv run python benchmarks/solvers.py                          # the README's table
    uv run python benchmarks/solvers.py --frames-per-clip 3 --methods reduced   # a quick look

Both methods run in this one process, at their default settings, on the same frames and the same
checkpoints: two GPT-2-XL-shaped random ones written here (the real GPT-2 XL cannot be
downloaded everywhere): transformers' default init, and a "hard" one whose query and key weights
are scaled by 0.6, so its reachable logit range is much smaller. Frames are the clips of
`benchmarks/clips.py`, solved as optimize.py solves a video: batch k holds the k-th frame of
every clip, each frame after the first started from its predecessor's solution where the method
does warm starts. Prints a table and writes benchmarks/results/solvers.json:

    seconds_per_frame   wall time of the solver (forward, backward, lift) / frames
    loss                the original's logit-space loss of the saved embeddings
    mae, iou, corr      the rendered picture against the target, as in metrics.json
    flicker             mean |change| between consecutive rendered frames minus the targets'
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import attention_scores, causal_attention, load_head  # noqa: E402
from badapple.layout import head_pictures  # noqa: E402
from badapple.metrics import mean_metrics, picture_metrics  # noqa: E402
from badapple.render import attention_picture  # noqa: E402
from badapple.solvers import METHOD_DEFAULTS, SOLVERS  # noqa: E402
from benchmarks.clips import CLIP_KINDS, make_clip  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "solvers.json"
HARD_QUERY_KEY_GAIN = 0.6  # the "hard" checkpoint's Q/K weights and biases, times this
FULL_VIDEO_FRAMES = 3286  # Bad Apple!! at 15 fps, for the projected full-run time


def write_checkpoints(folder: Path) -> dict[str, Path]:
    """Two GPT-2-XL-shaped one-layer checkpoints, saved with transformers: default and hard."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=1, n_embd=1600, n_head=25, n_positions=1024, vocab_size=16)
    paths = {}
    for name, gain in (("default", 1.0), ("hard", HARD_QUERY_KEY_GAIN)):
        torch.manual_seed(0)
        model = GPT2Model(config)
        with torch.no_grad():
            attention = model.h[0].attn.c_attn  # [d, 3d], columns [Q | K | V]
            attention.weight[:, : 2 * config.n_embd] *= gain
            attention.bias[: 2 * config.n_embd] *= gain
        paths[name] = folder / name
        model.save_pretrained(paths[name])
    return paths


def solve_runs(
    weights, clips: np.ndarray, method: str, layout: str = "half"
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Solve clips [C, N, T, T] frame by frame, as optimize.py does: batch k = frame k of every
    clip, each head of `weights` given its picture of the `layout` (layout.py). Returns
    embeddings [C, N, T, d], losses [C, N] (averaged over heads) and the solver's seconds."""
    settings = METHOD_DEFAULTS[method]
    solve = SOLVERS[method]
    clip_count, frame_count = clips.shape[:2]
    embeddings, losses, previous = [], [], None
    started = time.perf_counter()
    for k in range(frame_count):
        pictures = head_pictures(torch.from_numpy(clips[:, k]), layout)  # [C, H, T, T]
        numbers = [clip * frame_count + k + 1 for clip in range(clip_count)]
        starts = previous if settings.warm_steps and previous is not None else None
        solution = solve(weights, pictures, numbers, settings, lambda loss: None, starts)
        previous = solution.embeddings
        embeddings.append(solution.embeddings)
        losses.append(solution.loss)
    seconds = time.perf_counter() - started
    return torch.stack(embeddings, 1), torch.stack(losses, 1), seconds


def score(weights, clips: np.ndarray, embeddings: torch.Tensor, losses: torch.Tensor) -> dict:
    """Picture metrics and flicker of solved clips, averaged over every frame."""
    records, flicker = [], []
    for clip, clip_embeddings in zip(clips, embeddings, strict=True):
        with torch.no_grad():
            attention = causal_attention(attention_scores(clip_embeddings, weights))[:, 0]
        pictures = np.stack([attention_picture(a) for a in attention.numpy()])  # [N, T, T]
        records += [picture_metrics(p, t) for p, t in zip(pictures, clip, strict=True)]
        lower = np.tri(clip.shape[-1], dtype=bool)
        if len(clip) > 1:
            shown = np.abs(np.diff(pictures, axis=0))[:, lower].mean()
            wanted = np.abs(np.diff(clip, axis=0))[:, lower].mean()
            flicker.append(shown - wanted)
    means = mean_metrics([{**record, "loss": None} for record in records])
    return {
        "loss": float(losses.mean()),
        "mae": means["mae"],
        "iou": means["iou"],
        "corr": means["corr"],
        "flicker": float(np.mean(flicker)) if flicker else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames-per-clip", type=int, default=4, help="consecutive frames")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--kinds", default=",".join(CLIP_KINDS), help="clip kinds to use")
    parser.add_argument("--methods", default="reduced,adam", help="solvers to compare")
    parser.add_argument("--checkpoints", default="default,hard", help="which stand-ins")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    kinds, methods = args.kinds.split(","), args.methods.split(",")
    clips = np.stack([make_clip(kind, args.frames_per_clip, args.size) for kind in kinds])
    frames = clips.shape[0] * clips.shape[1]
    print(
        f"{len(kinds)} clips x {args.frames_per_clip} frames of {args.size}x{args.size}, "
        f"methods {', '.join(methods)}, {torch.get_num_threads()} CPU threads"
    )

    results = []
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = write_checkpoints(Path(folder))
        for name in args.checkpoints.split(","):
            weights = load_head(open_checkpoint(str(checkpoints[name])), (0,), args.size)
            for method in methods:
                embeddings, losses, seconds = solve_runs(weights, clips, method)
                row = {
                    "checkpoint": name,
                    "method": method,
                    "seconds_per_frame": seconds / frames,
                    **score(weights, clips, embeddings, losses),
                }
                results.append(row)
                print(_format_row(row), flush=True)

    print()
    print(_table(results))
    for name in args.checkpoints.split(","):
        rows = {row["method"]: row for row in results if row["checkpoint"] == name}
        if {"reduced", "adam"} <= rows.keys():
            speedup = rows["adam"]["seconds_per_frame"] / rows["reduced"]["seconds_per_frame"]
            print(f"{name}: reduced is {speedup:.0f}x faster per frame than adam")
    for row in results:
        if row["method"] == "reduced":
            minutes = row["seconds_per_frame"] * FULL_VIDEO_FRAMES / 60
            print(f"{row['checkpoint']}: {FULL_VIDEO_FRAMES} frames projected at {minutes:.1f} min")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {method: asdict(METHOD_DEFAULTS[method]) for method in methods}
    report = {
        "args": {**vars(args), "output": str(args.output)},
        "settings": settings,
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


def _format_row(row: dict) -> str:
    return (
        f"{row['checkpoint']:8} {row['method']:8} {row['seconds_per_frame']:9.3f} "
        f"{row['loss']:8.4f} {row['mae']:6.3f} {row['iou']:6.3f} {row['corr']:6.3f} "
        + (f"{row['flicker']:+8.4f}" if row["flicker"] is not None else "       -")
    )


def _table(results: list[dict]) -> str:
    header = "checkpoint method   s/frame      loss    mae    iou   corr  flicker"
    return "\n".join([header] + [_format_row(row) for row in results])


if __name__ == "__main__":
    main()
