"""Benchmark: full frame (two heads, the whole square) against half frame (one head, the lower
triangle), on the same frames, both scored on the whole square.

    uv run python benchmarks/full_frame.py --threads 1     # the README's table and picture
    uv run python benchmarks/full_frame.py --kinds text --frames-per-clip 2 --size 64   # a look

Same stand-in checkpoints and clips as benchmarks/solvers.py (GPT-2-XL-shaped, "default" and
"hard"), the reduced method at its default settings, frames solved as optimize.py solves a video
(batch k = frame k of every clip, warm starts from the predecessor). Half frame plays on head 0,
full frame on heads 0 (the frame) and 1 (the transposed frame). Prints a table and writes
benchmarks/results/full_frame.json and docs/full_frame.png (target | half frame | full frame of
the frame with the most white above the diagonal, on the default checkpoint):

    seconds_per_frame   wall time of the solver (forward, backward, lift) / frames
    cpu_per_frame       the process's CPU time over the same span / frames: steadier than wall
                        time on a shared machine (with --threads 1, it is the work itself)
    loss                the original's logit-space loss, averaged over the heads
    mae, iou, corr      the rendered picture against the target on the whole square: a half
                        frame's black upper triangle counts against it
    corr_lower          corr on the lower triangle only, what metrics.json says of a half frame
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
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import attention_scores, causal_attention, load_head  # noqa: E402
from badapple.layout import layout_picture  # noqa: E402
from badapple.metrics import mean_metrics, picture_metrics  # noqa: E402
from badapple.render import colorize  # noqa: E402
from badapple.solvers import METHOD_DEFAULTS  # noqa: E402
from benchmarks.clips import make_clip  # noqa: E402
from benchmarks.solvers import solve_runs, write_checkpoints  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "full_frame.json"
PICTURE = ROOT / "docs" / "full_frame.png"
METHOD = "reduced"
LAYOUT_HEADS = {"half": (0,), "full": (0, 1)}
DEFAULT_KINDS = "silhouettes,thin_limbs,text,specks"  # shapes on both sides of the diagonal


def render_runs(weights, embeddings: torch.Tensor, layout: str) -> np.ndarray:
    """The rendered pictures of solved clips: embeddings [C, N, T, d] -> [C, N, T, T]."""
    pictures = []
    for clip_embeddings in embeddings:
        with torch.no_grad():
            attention = causal_attention(attention_scores(clip_embeddings, weights)).numpy()
        pictures.append([layout_picture(maps, layout) for maps in attention])  # [N, T, T]
    return np.array(pictures)


def score(clips: np.ndarray, pictures: np.ndarray, losses: torch.Tensor) -> dict:
    """Means over every frame of the loss and of mae, iou, corr on the square (and corr_lower)."""
    shape = clips.shape[2:]  # [T, T]
    pairs = list(zip(pictures.reshape(-1, *shape), clips.reshape(-1, *shape), strict=True))
    square = mean_metrics([{**picture_metrics(p, t, "square"), "loss": None} for p, t in pairs])
    lower = mean_metrics([{**picture_metrics(p, t, "lower"), "loss": None} for p, t in pairs])
    return {
        "loss": float(losses.mean()),
        "mae": square["mae"],
        "iou": square["iou"],
        "corr": square["corr"],
        "corr_lower": lower["corr"],
    }


def write_picture(path: Path, target: np.ndarray, half: np.ndarray, full: np.ndarray) -> None:
    """target | half frame | full frame, side by side, as a small PNG."""
    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    axes = figure.subplots(1, 3)
    panels = (
        ("target", np.repeat(np.round(target * 255).astype(np.uint8)[..., None], 3, axis=-1)),
        ("half frame: head 0", colorize(half)),
        ("full frame: heads 0 + 1 transposed", colorize(full)),
    )
    for ax, (title, pixels) in zip(axes, panels, strict=True):
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames-per-clip", type=int, default=3, help="consecutive frames")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--kinds", default=DEFAULT_KINDS, help="clip kinds (benchmarks/clips.py)")
    parser.add_argument("--checkpoints", default="default,hard", help="which stand-ins")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--picture", type=Path, default=PICTURE, help="where the PNG goes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    clips = np.stack([make_clip(kind, args.frames_per_clip, args.size) for kind in kinds])
    frames = clips.shape[0] * clips.shape[1]  # clips [C, N, T, T]
    print(
        f"{len(kinds)} clips x {args.frames_per_clip} frames of {args.size}x{args.size}, "
        f"method {METHOD}, {torch.get_num_threads()} CPU threads"
    )

    torch.optim.Adam([torch.zeros(1)])  # the first Adam imports torch._dynamo: not solver time
    results, shown = [], {}
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = write_checkpoints(Path(folder))
        for name in args.checkpoints.split(","):
            checkpoint = open_checkpoint(str(checkpoints[name]))
            for layout, heads in LAYOUT_HEADS.items():
                weights = load_head(checkpoint, heads, args.size)
                cpu_started = time.process_time()
                embeddings, losses, seconds = solve_runs(weights, clips, METHOD, layout)
                cpu_seconds = time.process_time() - cpu_started
                pictures = render_runs(weights, embeddings, layout)  # [C, N, T, T]
                row = {
                    "checkpoint": name,
                    "layout": layout,
                    "heads": list(heads),
                    "seconds_per_frame": seconds / frames,
                    "cpu_per_frame": cpu_seconds / frames,
                    **score(clips, pictures, losses),
                }
                results.append(row)
                shown[name, layout] = pictures
                print(_format_row(row), flush=True)

    print()
    print(_table(results))
    first = args.checkpoints.split(",")[0]
    upper = np.triu(np.ones(clips.shape[-2:], dtype=bool), 1)
    clip, frame = np.unravel_index((clips[..., upper] > 0.5).sum(-1).argmax(), clips.shape[:2])
    write_picture(
        args.picture,
        clips[clip, frame],
        shown[first, "half"][clip, frame],
        shown[first, "full"][clip, frame],
    )
    print(f"wrote {args.picture} ({kinds[clip]} frame {frame + 1}, {first} checkpoint)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {**vars(args), "output": str(args.output), "picture": str(args.picture)},
        "settings": asdict(METHOD_DEFAULTS[METHOD]),
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


def _format_row(row: dict) -> str:
    return (
        f"{row['checkpoint']:8} {row['layout']:6} {row['seconds_per_frame']:9.3f} "
        f"{row['cpu_per_frame']:9.3f} "
        f"{row['loss']:8.4f} {row['mae']:6.3f} {row['iou']:6.3f} {row['corr']:6.3f} "
        f"{row['corr_lower']:10.3f}"
    )


def _table(results: list[dict]) -> str:
    header = "checkpoint layout s/frame  cpu s/frame      loss    mae    iou   corr corr_lower"
    return "\n".join([header] + [_format_row(row) for row in results])


if __name__ == "__main__":
    main()
