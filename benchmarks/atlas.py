"""Benchmark: the display atlas (badapple/atlas.py) against solves, and its speed.

    uv run python benchmarks/atlas.py                 # all three parts
    uv run python benchmarks/atlas.py --skip-xl       # without the 48-layer GPT-2-XL shape

1. Does the span rank displays as their solves do? On SmolLM2-135M-Instruct's real trained
   weights (fixtures/real_weights.py: every head of layers 0 and 1, the widest and the narrowest
   head of every other layer) and on a GPT-2-XL-shaped stand-in whose 25 heads have their query
   and key weights scaled by 0.02 to 1 (the other stand-ins' heads are all alike), each display is
   solved as --head best / --layer best solve it (survey.survey_displays: 4 frames of the dance
   video spread over 640, 150 steps cold) and its mae set beside its span: Spearman's rank
   correlation, over all and over the strong displays (span at least WEAK_SPAN_NATS) alone.
2. How fast is it? A GPT-2-XL-shaped checkpoint of 48 layers (d = 1600, 25 heads of 64; holding
   what the atlas reads, every layer's ln_1 and c_attn, random at transformers' init scale,
   float32 as the hub's gpt2-xl is): open_checkpoint + measure_atlas over its 1,200 heads, timed.

Prints, and writes docs/benchmarks/atlas.json.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from badapple.atlas import WEAK_SPAN_NATS, measure_atlas  # noqa: E402
from badapple.checkpoint import open_checkpoint  # noqa: E402
from badapple.head import load_head  # noqa: E402
from badapple.look import Look  # noqa: E402
from badapple.solvers import solver_settings  # noqa: E402
from badapple.storage import FramesDir, read_targets  # noqa: E402
from badapple.survey import Display, survey_displays, survey_frames  # noqa: E402
from benchmarks.full_video import write_frames_folder  # noqa: E402
from fixtures.real_weights import smollm2_checkpoint  # noqa: E402

RESULTS = ROOT / "docs" / "benchmarks" / "atlas.json"
FRAMES = 640  # of the dance video; the survey's 4 are spread over them
XL = dict(d=1600, heads=25, layers=48, positions=1024)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (no ties expected among spans and maes)."""
    rank_x, rank_y = (np.argsort(np.argsort(values)) for values in (x, y))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def judged(checkpoint: Path, displays: list[Display], frames_dir: Path) -> list[dict]:
    """Each display's span and survey mae."""
    opened = open_checkpoint(str(checkpoint))
    atlas = measure_atlas(opened, sorted({display.layer for display in displays}))
    folder = FramesDir(frames_dir)
    frames = survey_frames(range(1, FRAMES + 1))
    pictures = torch.from_numpy(read_targets(folder, frames, 1))
    look = Look("half", "sink", 6.0, 0.0, "magma", 1, opened.family.causal)
    tokens = pictures.shape[-1] + 1

    def weights_of(display: Display):
        return load_head(opened, display.heads, tokens, display.layer)

    survey = survey_displays(
        weights_of, displays, look, frames, pictures, "reduced", solver_settings("reduced")
    )
    for record, display in zip(survey, displays, strict=True):
        record["span_nats"] = atlas.span(display.layer, display.heads[0])
    return survey


def correlations(survey: list[dict]) -> dict:
    spans = [record["span_nats"] for record in survey]
    maes = [record["mae"] for record in survey]
    strong = [record for record in survey if record["span_nats"] >= WEAK_SPAN_NATS]
    return {
        "displays": len(survey),
        # a wider display should play better: a negative correlation of span with mae
        "spearman_span_mae": spearman(spans, maes),
        "strong_displays": len(strong),
        "spearman_span_mae_strong": spearman(
            [r["span_nats"] for r in strong], [r["mae"] for r in strong]
        )
        if len(strong) > 2
        else None,
    }


def graded_xl_stand_in(folder: Path) -> Path:
    """One GPT-2-XL-shaped layer whose head h has its queries and keys scaled by a gain from
    0.02 to 1 (log-spaced): spans from under a nat to ~125."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=1, n_embd=XL["d"], n_head=XL["heads"], n_positions=1024)
    torch.manual_seed(0)
    model = GPT2Model(config)
    gains = np.geomspace(0.02, 1.0, XL["heads"])
    with torch.no_grad():
        attention = model.h[0].attn.c_attn  # [d, 3d], columns [Q | K | V]
        for head, gain in enumerate(gains):
            for start in (head * 64, XL["d"] + head * 64):
                attention.weight[:, start : start + 64] *= float(gain)
    model.save_pretrained(folder)
    return folder


def xl_atlas_checkpoint(folder: Path) -> Path:
    """48 GPT-2-XL-shaped layers' ln_1 and c_attn (and wpe), float32, transformers' init scale."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    tensors = {"wpe.weight": torch.randn(XL["positions"], XL["d"], generator=generator) * 0.01}
    for layer in range(XL["layers"]):
        tensors[f"h.{layer}.ln_1.weight"] = 1 + 0.1 * torch.randn(XL["d"], generator=generator)
        tensors[f"h.{layer}.ln_1.bias"] = 0.1 * torch.randn(XL["d"], generator=generator)
        tensors[f"h.{layer}.attn.c_attn.weight"] = 0.02 * torch.randn(
            XL["d"], 3 * XL["d"], generator=generator
        )
        tensors[f"h.{layer}.attn.c_attn.bias"] = torch.zeros(3 * XL["d"])
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    config = {
        "model_type": "gpt2",
        "n_embd": XL["d"],
        "n_head": XL["heads"],
        "n_layer": XL["layers"],
        "n_positions": XL["positions"],
        "layer_norm_epsilon": 1e-5,
        "vocab_size": 50257,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-xl", action="store_true", help="without the 48-layer timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    record = {"written": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        write_frames_folder(FRAMES, 256, 0, work, work / "frames")

        smollm2 = smollm2_checkpoint(work / "smollm2")
        spans = measure_atlas(open_checkpoint(str(smollm2)), list(range(30))).spans
        displays = [Display(layer, (head,)) for layer in (0, 1) for head in range(9)]
        for layer in range(2, 30):
            order = spans[layer].argsort()
            displays += [Display(layer, (int(order[-1]),)), Display(layer, (int(order[0]),))]
        survey = judged(smollm2, displays, work / "frames")
        record["smollm2"] = {**correlations(survey), "survey": survey}
        layer0 = [r for r in survey if r["layer"] == 0]
        record["smollm2"]["layer0"] = correlations(layer0)

        graded = graded_xl_stand_in(work / "graded")
        survey = judged(
            graded, [Display(0, (head,)) for head in range(XL["heads"])], work / "frames"
        )
        record["xl_graded_stand_in"] = {**correlations(survey), "survey": survey}

        if not args.skip_xl:
            checkpoint = xl_atlas_checkpoint(work / "xl48")
            started = time.perf_counter()
            opened = open_checkpoint(str(checkpoint))
            atlas = measure_atlas(opened, list(range(XL["layers"])))
            seconds = time.perf_counter() - started
            record["xl_48_layers"] = {
                "heads": int(atlas.spans.numel()),
                "seconds": seconds,
                "span_min": float(atlas.spans.min()),
                "span_max": float(atlas.spans.max()),
            }

    for name in ("smollm2", "xl_graded_stand_in"):
        figures = record[name]
        print(
            f"{name}: {figures['displays']} displays, Spearman(span, mae) "
            f"{figures['spearman_span_mae']:+.3f}; strong ones alone "
            f"({figures['strong_displays']}) "
            + (
                f"{figures['spearman_span_mae_strong']:+.3f}"
                if figures["spearman_span_mae_strong"] is not None
                else "-"
            )
        )
    layer0 = record["smollm2"]["layer0"]
    print(f"smollm2 layer 0 alone: Spearman(span, mae) {layer0['spearman_span_mae']:+.3f}")
    for entry in sorted(record["smollm2"]["survey"], key=lambda r: (r["layer"], r["heads"])):
        print(
            f"  layer {entry['layer']:2d} head {entry['heads'][0]}: span "
            f"{entry['span_nats']:8.2f}, mae {entry['mae']:.4f}"
        )
    if "xl_48_layers" in record:
        xl = record["xl_48_layers"]
        print(f"GPT-2-XL shape, 48 layers: atlas of {xl['heads']} heads in {xl['seconds']:.1f} s")
    record["cpu_threads"] = torch.get_num_threads()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(record, indent=1, default=lambda v: None if math.isnan(v) else v)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
