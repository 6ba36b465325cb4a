"""Benchmark: optimize.py's own run on deeper layers (--layer), what it costs and how it looks.

    uv run python benchmarks/layers.py                          # SmolLM2: layers 0, 1, 15, 29
    uv run python benchmarks/layers.py --checkpoint gpt2-small  # layers 0, 1, 6, 11; 48 frames
    uv run python benchmarks/layers.py --layers 0,3 --frames 16 --size 64

On SmolLM2-135M-Instruct's real trained weights (fixtures/real_weights.py, 30 layers; head 0,
the default) or on a GPT-2-small-shaped stand-in (12 layers, d = 768, 12 heads of 64, 1024
positions, random weights by transformers' own init, saved with save_pretrained): the frames of
`clips.dance_video` become a frames folder as download.py leaves it (full_video.py's
`write_frames_folder`: PNGs -> H.264 -> download), and `optimize.optimize` runs on it at its
defaults with layer=L, once per layer, timed as a whole. Every frame is then judged from what
it saved, through transformers' GPT2Model of blocks 0..L (full_video.py's `rendered_frames`).

Prints and writes (--out) per layer: the optimize() call per frame, the solver's per-frame
seconds (solve and reach), the forwards through blocks 0..L-1 a frame took to reach the layer
(`reach_steps`) and their largest relative error, the seconds of one such forward per frame
(timed apart, on saved inputs), and mean, p99 and worst mae. Then the projection for GPT-2 XL's
last layer (47): one XL-shaped block's forward per frame, timed here, times 47 blocks times the
mean forwards a frame took. And a strip (--strip): the most detailed frame, solved again in
full frame (two heads, the whole square) on the first, a middle and the last of --layers, its
target beside its pictures as transformers draws them.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.chunks import saved_inputs_embeds  # noqa: E402
from badapple.layout import layout_metrics  # noqa: E402
from badapple.optimize import optimize  # noqa: E402
from badapple.residual import LayerInput  # noqa: E402
from badapple.storage import FramesDir  # noqa: E402
from badapple.verify import model_through_layer  # noqa: E402
from benchmarks.full_video import held_frames, rendered_frames, write_frames_folder  # noqa: E402
from fixtures.real_weights import smollm2_checkpoint  # noqa: E402

RESULTS = ROOT / "docs" / "benchmarks" / "layers.json"
STRIP = ROOT / "docs" / "layer_strip.png"
SMALL = dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=16)
XL = dict(n_embd=1600, n_head=25, n_positions=1024, vocab_size=16)
XL_LAST_LAYER = 47
TIMED_FRAMES = 8  # frames of one timed forward
TIMED_REPEATS = 3  # the fastest of these


def write_small_checkpoint(path: Path) -> Path:
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    GPT2Model(GPT2Config(**SMALL)).save_pretrained(path)
    return path


MODEL_NAMES = {
    "smollm2": "SmolLM2-135M-Instruct (real weights)",
    "gpt2-small": "a 12-layer GPT-2-small stand-in",
}
# name -> (folder -> the checkpoint's path, default --layers)
CHECKPOINTS = {
    "smollm2": (smollm2_checkpoint, "0,1,15,29"),
    "gpt2-small": (write_small_checkpoint, "0,1,6,11"),
}


def seconds_per_forward(run, inputs: torch.Tensor) -> float:
    """The fastest of TIMED_REPEATS calls of `run` on `inputs` [n, T, d], per frame."""
    best = float("inf")
    for _ in range(TIMED_REPEATS):
        started = time.perf_counter()
        run(inputs)
        best = min(best, time.perf_counter() - started)
    return best / len(inputs)


def xl_block_seconds(tokens: int) -> float:
    """One GPT-2-XL-shaped block's forward, per frame of `tokens` tokens, on this machine."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=1, **XL)
    config._attn_implementation = "sdpa"  # as LayerInput runs the blocks
    # initialised: uninitialised memory can hold denormal floats, which a CPU runs 50x slower
    torch.manual_seed(0)
    model = GPT2Model(config).eval()
    model.ln_f = torch.nn.Identity()
    inputs = torch.randn(TIMED_FRAMES, tokens, XL["n_embd"])
    with torch.no_grad():
        return seconds_per_forward(lambda x: model(inputs_embeds=x), inputs)


def draw_strip(
    path: Path, frame: int, target: np.ndarray, pictures: dict[int, tuple], model: str
) -> None:
    """The target, then the frame's picture on each layer, labelled with its mae."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.6 * (1 + len(pictures)), 3.1), dpi=110, layout="constrained")
    axes = figure.subplots(1, 1 + len(pictures))
    shown = [("target", target, None)] + [
        (f"layer {layer}", picture, mae) for layer, (picture, mae) in pictures.items()
    ]
    for ax, (title, image, mae) in zip(axes, shown, strict=True):
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title if mae is None else f"{title}: mae {mae:.4f}", fontsize=9)
    figure.suptitle(f"frame {frame} in full frame (heads 0 and 1) on layers of {model}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _shown(path: Path) -> str:
    """A path for the record: relative to the repository when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        choices=list(CHECKPOINTS),
        default="smollm2",
        help="smollm2: real trained weights; gpt2-small: the random stand-in",
    )
    parser.add_argument("--layers", help="comma-separated (default: the checkpoint's)")
    parser.add_argument("--frames", type=int, default=48, help="frames of clips.dance_video")
    parser.add_argument("--size", type=int, default=256, help="frame side (even: H.264 4:2:0)")
    parser.add_argument("--chunk-size", type=int, default=64, help="optimize()'s")
    parser.add_argument("--device", default="auto", help="optimize()'s: auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--strip", type=Path, default=STRIP, help="PNG of one frame per layer")
    args = parser.parse_args()
    write_checkpoint, default_layers = CHECKPOINTS[args.checkpoint]
    layers = [int(part) for part in (args.layers or default_layers).split(",")]
    tokens = args.size + 1  # true tone: the sink, then a row per pixel row
    print(
        f"{args.frames} frames of dance_video {args.size}x{args.size} ({tokens} tokens), "
        f"checkpoint {args.checkpoint}, layers {layers}, {torch.get_num_threads()} CPU threads"
    )
    rows, strip_pictures = [], {}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        checkpoint_path = write_checkpoint(work / args.checkpoint)
        checkpoint = open_checkpoint(str(checkpoint_path))
        source = work / "frames"
        write_frames_folder(args.frames, args.size, 0, work, source)
        strip_frame = None
        for layer in layers:
            frames_dir = work / f"frames-layer{layer}"
            shutil.copytree(source, frames_dir)
            started = time.perf_counter()
            metrics = optimize(
                model=str(checkpoint_path),
                frames_dir=str(frames_dir),
                layer=layer,
                chunk_size=args.chunk_size,
                device=args.device,
            )
            optimize_seconds = time.perf_counter() - started
            folder = FramesDir(frames_dir)
            device = torch.device(metrics["device"])
            model = model_through_layer(checkpoint, layer).to(device)
            numbers = list(range(1, args.frames + 1))
            shown = {
                frame: (picture, target)
                for frame, picture, target in rendered_frames(
                    folder, metrics, model, numbers, device
                )
            }
            per_frame = {
                frame: layout_metrics(picture, target, "half")
                for frame, (picture, target) in shown.items()
            }
            if strip_frame is None:  # the frame with the most detail: the most edges
                strip_frame = max(
                    numbers, key=lambda f: float(np.abs(np.diff(shown[f][1][0], axis=1)).sum())
                )
            records = metrics["frames"]
            mae = np.array([per_frame[f]["mae"] for f in numbers])
            row = {
                "layer": layer,
                "optimize_seconds_per_frame": optimize_seconds / args.frames,
                "solver_seconds_per_frame": float(np.mean([r["seconds"] for r in records])),
                "mean_mae": float(mae.mean()),
                "p99_mae": float(np.quantile(mae, 0.99)),
                "worst_mae": float(mae.max()),
                "worst_frame": numbers[int(mae.argmax())],
                "mean_corr": float(
                    np.mean([per_frame[f]["corr"] for f in numbers if per_frame[f]["corr"]])
                ),
                "solver_steps_mean": float(np.mean([r["steps"] for r in records])),
            }
            if layer > 0:
                _, _, saved = next(
                    saved_inputs_embeds(held_frames(folder, metrics), numbers[:TIMED_FRAMES])
                )
                layer_input = LayerInput(checkpoint, layer, device)
                forward = seconds_per_forward(layer_input, saved.to(device))
                steps = [r["reach_steps"] for r in records]
                row.update(
                    {
                        "reach_steps_mean": float(np.mean(steps)),
                        "reach_steps_max": int(max(steps)),
                        "reach_scales": sorted({r["reach_scale"] for r in records}),
                        "reach_error_max": max(r["reach_error"] for r in records),
                        "forward_seconds_per_frame": forward,
                        "forward_seconds_per_block_per_frame": forward / layer,
                        "reach_seconds_per_frame": forward * float(np.mean(steps)),
                    }
                )
            rows.append(row)
            print(json.dumps(row))

        shown_layers = sorted({layers[0], layers[len(layers) // 2], layers[-1]})
        for layer in shown_layers:  # the strip's frame in full frame, solved alone
            frames_dir = work / f"frames-strip-layer{layer}"
            shutil.copytree(source, frames_dir)
            metrics = optimize(
                model=str(checkpoint_path),
                frames_dir=str(frames_dir),
                layer=layer,
                full_frame=True,
                frames=f"{strip_frame}:{strip_frame}",
                device=args.device,
            )
            model = model_through_layer(checkpoint, layer).to(device)
            folder = FramesDir(frames_dir)
            [(_, picture, strip_target)] = rendered_frames(
                folder, metrics, model, [strip_frame], device
            )
            strip_pictures[layer] = (picture, layout_metrics(picture, strip_target, "full")["mae"])

    draw_strip(args.strip, strip_frame, strip_target, strip_pictures, MODEL_NAMES[args.checkpoint])
    deep = [row for row in rows if row["layer"] > 0]
    xl_block = xl_block_seconds(tokens)
    steps = float(np.mean([row["reach_steps_mean"] for row in deep])) if deep else 2.0
    projection = {
        "xl_block_forward_seconds_per_frame": xl_block,
        "reach_steps_assumed": steps,
        "xl_last_layer_reach_seconds_per_frame": xl_block * XL_LAST_LAYER * steps,
    }
    # blocks 0..46 whole: 12·d² + 13·d weights each, float32
    projection["xl_last_layer_weights_gb"] = (
        XL_LAST_LAYER * (12 * XL["n_embd"] ** 2 + 13 * XL["n_embd"]) * 4 / 1e9
    )
    record = {
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": {"shape": SMALL, "weights": "transformers' init, seed 0"}
        if args.checkpoint == "gpt2-small"
        else {"name": args.checkpoint, "weights": "real, trained (fixtures/real_weights.py)"},
        "frames": args.frames,
        "size": args.size,
        "tokens": tokens,
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "layers": rows,
        "projection": projection,
        "strip": {
            "path": _shown(args.strip),
            "frame": strip_frame,
            "layout": "full",
            "mae": {str(layer): mae for layer, (_, mae) in strip_pictures.items()},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print()
    print(
        "layer  optimize s/f  solver s/f  solve steps  reach forwards  s/forward  reach s/f  "
        "mean mae  p99 mae  worst"
    )
    for row in rows:
        deeper = row["layer"] > 0
        reach = f"{row['reach_steps_mean']:5.2f} (max {row['reach_steps_max']})" if deeper else "-"
        forward = f"{row['forward_seconds_per_frame']:.3f}" if deeper else "-"
        reach_seconds = f"{row['reach_seconds_per_frame']:.3f}" if deeper else "-"
        print(
            f"{row['layer']:5d}  {row['optimize_seconds_per_frame']:12.3f}  "
            f"{row['solver_seconds_per_frame']:10.3f}  {row['solver_steps_mean']:11.1f}  "
            f"{reach:>14}  {forward:>9}  {reach_seconds:>9}  "
            f"{row['mean_mae']:8.4f}  {row['p99_mae']:7.4f}  {row['worst_mae']:.4f}"
        )
    print(
        f"GPT-2 XL's layer 47, projected: one XL block {xl_block:.3f} s per frame here, "
        f"x {XL_LAST_LAYER} blocks x {steps:.2f} forwards = "
        f"{projection['xl_last_layer_reach_seconds_per_frame']:.1f} s per frame to reach it; "
        f"blocks 0..46 hold {projection['xl_last_layer_weights_gb']:.1f} GB of float32 weights"
    )
    print(f"wrote {args.out} and {args.strip}")


if __name__ == "__main__":
    main()
