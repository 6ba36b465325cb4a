"""Benchmark: the default solver over a whole video's worth of frames, as optimize.py batches them.

    uv run python benchmarks/full_video.py                                  # 3,286 frames
    uv run python benchmarks/full_video.py --frames 640 --device cpu        # a CPU projection
    uv run python benchmarks/full_video.py --device cuda --chunk-size 512   # a GPU run
    uv run python benchmarks/full_video.py --render zscore                  # the original's look

A shadow-art video as long as Bad Apple!! at 15 fps (the clips of `benchmarks/clips.py`, one after
another) is solved on a GPT-2-XL-shaped stand-in checkpoint in the batches of
`schedule.solve_order`: each frame after a run's first starts from its predecessor's solution.
Only the solver is timed (no PNGs, no files); embeddings are dropped once their successors have
started, as in optimize.py, so memory stays that of one chunk. Prints seconds per frame, the
total, the projection to the full video, and peak memory (GPU: allocated by torch; CPU: RSS).
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import load_head  # noqa: E402
from badapple.layout import token_count  # noqa: E402
from badapple.optimize import pick_device  # noqa: E402
from badapple.render import RENDERS  # noqa: E402
from badapple.schedule import solve_order  # noqa: E402
from badapple.solvers import METHOD_DEFAULTS, SOLVERS, solve_frames  # noqa: E402
from badapple.targets import aimed_logits  # noqa: E402
from benchmarks.clips import CLIP_KINDS, make_clip  # noqa: E402
from benchmarks.solvers import FULL_VIDEO_FRAMES, contrast_of, write_checkpoints  # noqa: E402


def video_frames(count: int, size: int) -> np.ndarray:
    """`count` frames of the benchmark clips played one after another: [count, size, size]."""
    per_clip = -(-count // len(CLIP_KINDS))
    clips = [make_clip(kind, per_clip, size, seed=index) for index, kind in enumerate(CLIP_KINDS)]
    return np.concatenate(clips)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames", type=int, default=FULL_VIDEO_FRAMES, help="frames to solve")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--chunk-size", type=int, default=64, help="frames solved at once")
    parser.add_argument("--method", choices=list(SOLVERS), default="reduced", help="solver")
    parser.add_argument("--render", choices=RENDERS, default="sink", help="as optimize.py's")
    parser.add_argument("--checkpoint", choices=["default", "hard"], default="hard")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    args = parser.parse_args()
    device = pick_device(args.device)
    settings = METHOD_DEFAULTS[args.method]
    frames = video_frames(args.frames, args.size)  # [F, T, T] on the host, like the PNGs
    print(
        f"{args.frames} frames of {args.size}x{args.size}, method {args.method}, render "
        f"{args.render}, chunks of "
        f"{args.chunk_size}, on {device} ({torch.get_num_threads()} CPU threads)"
    )

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_checkpoints(Path(folder))[args.checkpoint]
        tokens = token_count(args.size, args.render)
        weights = load_head(open_checkpoint(str(checkpoint)), (0,), tokens).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = solve_order(
        list(range(1, args.frames + 1)), args.chunk_size, warm=settings.warm_steps > 0
    )
    solved: dict[int, torch.Tensor] = {}
    losses = []
    started = time.perf_counter()
    for batch in batches:
        pictures = torch.from_numpy(frames[np.array(batch) - 1]).to(device)[:, None]
        targets = aimed_logits(pictures, args.render, contrast_of(args.method, args.render))
        starts = {frame: solved[frame - 1] for frame in batch if frame - 1 in solved}
        solution = solve_frames(
            args.method, weights, targets, batch, settings, lambda loss: None, starts
        )
        losses.append(solution.loss.cpu())
        next_solved = dict(zip(batch, solution.embeddings, strict=True))
        solved = next_solved  # the chunk before is no longer needed
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started

    per_frame = seconds / args.frames
    print(
        f"{seconds:.1f} s in all, {per_frame:.4f} s per frame; mean loss "
        f"{float(torch.cat(losses).mean()):.4f}"
    )
    print(
        f"projected for {FULL_VIDEO_FRAMES} frames: {per_frame * FULL_VIDEO_FRAMES:.1f} s "
        f"({per_frame * FULL_VIDEO_FRAMES / 60:.1f} min)"
    )
    if device.type == "cuda":
        print(
            f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        )
    print(
        f"peak RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )


if __name__ == "__main__":
    main()
