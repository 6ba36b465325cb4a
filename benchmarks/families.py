"""Benchmark: optimize.py's own run on a one-layer stand-in of each family, real shapes.

    uv run python benchmarks/families.py                  # every family, 24 frames of 256x256
    uv run python benchmarks/families.py --families llama,bert --frames 8 --size 64
    uv run python benchmarks/families.py --families bloom --only "BLOOM-560m, --head best"

Each stand-in is written with transformers (random weights by its own init, one layer, the real
model's shape below) and saved with save_pretrained. The frames of `clips.dance_video` become a
frames folder as download.py leaves it (full_video.py's `write_frames_folder`), and
`optimize.optimize` runs on it at its defaults (head 0; a bidirectional model plays the whole
square), once per family, and GPT-2 small once more in full frame (heads 0 and 1: the whole
square, as BERT's one head shows it); the ALiBi families (BLOOM, MPT) once more with --head
best, since their head 0's bias is the steepest (STAND_IN_OPTIONS); and the families with a norm
after the projection (Qwen3, OLMo 2) once more spread as trained weights are, with --head best
(SPREAD_AS_TRAINED), since random init is round where trained heads are long and thin. Every
frame is judged from what it saved, through transformers' own base model of the family
(full_video.py's `rendered_frames`): mean and worst mae and mean corr against the frame (the
lower triangle, or the whole square in full frame and for BERT). Prints a table and writes
docs/benchmarks/families.json, where the rows of the stand-ins it ran replace theirs and the
others stay, each row with its own date and frames.

First come the real trained checkpoints (fixtures/real_weights.py), which random init cannot
stand in for: SmolLM2-135M-Instruct on its default display (layer 0 head 0, weak) and on the one
`--layer best --head best` picks, and all-MiniLM-L6-v2 with `--head best`.
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
from badapple.layout import layout_metrics  # noqa: E402
from badapple.optimize import optimize  # noqa: E402
from badapple.storage import FramesDir  # noqa: E402
from badapple.verify import model_through_layer  # noqa: E402
from benchmarks.full_video import rendered_frames, write_frames_folder  # noqa: E402
from fixtures.real_weights import minilm_checkpoint, smollm2_checkpoint  # noqa: E402

RESULTS = ROOT / "docs" / "benchmarks" / "families.json"
BLOOM_560M = dict(hidden_size=1024, n_head=16)  # ALiBi, the input norm
# ALiBi; its MLP narrowed (expansion 1, not 4): only the attention plays
MPT_7B = dict(d_model=4096, n_heads=32, max_seq_len=2048, expansion_ratio=1)
QWEN3_0_6B = dict(  # a norm after each head's projection
    hidden_size=1024,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
    max_position_embeddings=40960,
    rope_theta=1e6,
)
OLMO2_1B = dict(  # no norm before the attention; q_norm and k_norm over all 16 heads
    hidden_size=2048,
    num_attention_heads=16,
    num_key_value_heads=16,
    intermediate_size=8192,
    max_position_embeddings=4096,
    rope_theta=500000.0,
)
SMOLLM3_3B = dict(
    hidden_size=2048,
    num_attention_heads=16,
    num_key_value_heads=4,
    intermediate_size=11008,
    max_position_embeddings=65536,
    rope_theta=5e6,
)
# model_type and config of a one-layer stand-in, named for the model whose shape it has
STAND_INS = {
    "GPT-2 (small)": ("gpt2", dict(n_embd=768, n_head=12, n_positions=1024)),
    # the whole square on two heads: what BERT's one head does, for its speed's comparison
    "GPT-2 (small), full frame": ("gpt2", dict(n_embd=768, n_head=12, n_positions=1024)),
    "GPT-2 XL": ("gpt2", dict(n_embd=1600, n_head=25, n_positions=1024)),
    "Llama-3.2-1B": (
        "llama",
        dict(
            hidden_size=2048,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=8192,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=32.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8192,
            ),
        ),
    ),
    "Qwen2.5-0.5B": (
        "qwen2",
        dict(
            hidden_size=896,
            num_attention_heads=14,
            num_key_value_heads=2,
            intermediate_size=4864,
            max_position_embeddings=32768,
            rope_theta=1e6,
        ),
    ),
    "Gemma-2B": (
        "gemma",
        dict(
            hidden_size=2048,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
            intermediate_size=16384,
            max_position_embeddings=8192,
        ),
    ),
    "Qwen3-0.6B, spread as trained, --head best": (  # SPREAD_AS_TRAINED
        "qwen3",
        QWEN3_0_6B,
    ),
    "Qwen3-0.6B": (
        "qwen3",
        QWEN3_0_6B,
    ),
    "Gemma-3-270M": (
        "gemma3_text",
        dict(
            hidden_size=640,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=256,
            intermediate_size=2048,
            max_position_embeddings=32768,
            query_pre_attn_scalar=256,
            sliding_window=512,
            layer_types=["sliding_attention"],  # its layer 0: local, theta 10k
        ),
    ),
    "OLMo-2-1B, spread as trained, --head best": (  # SPREAD_AS_TRAINED
        "olmo2",
        OLMO2_1B,
    ),
    "OLMo-2-1B": (  # no norm before the attention; q_norm and k_norm over all 16 heads
        "olmo2",
        OLMO2_1B,
    ),
    "Pythia-160m": (
        "gpt_neox",
        dict(
            hidden_size=768,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=2048,
            rotary_pct=0.25,
        ),
    ),
    "GPT-Neo-125M": (
        "gpt_neo",
        dict(
            hidden_size=768,
            num_heads=12,
            attention_types=[[["global"], 1]],
            max_position_embeddings=2048,
        ),
    ),
    "OPT-125m": (
        "opt",
        dict(
            hidden_size=768,
            num_attention_heads=12,
            ffn_dim=3072,
            max_position_embeddings=2048,
            word_embed_proj_dim=768,
        ),
    ),
    "Gemma-2-2B": (  # its one layer a sliding one (4096 tokens: the frame fits), scores capped
        "gemma2",
        dict(
            hidden_size=2304,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            intermediate_size=9216,
            max_position_embeddings=8192,
            query_pre_attn_scalar=256,
            attn_logit_softcapping=50.0,
            sliding_window=4096,
        ),
    ),
    "BLOOM-560m": ("bloom", BLOOM_560M),
    "BLOOM-560m, --head best": ("bloom", BLOOM_560M),
    "MPT-7B": ("mpt", MPT_7B),
    "MPT-7B, --head best": ("mpt", MPT_7B),
    # Mixtral-8x7B's attention; its experts' MLPs made small (the played layer 0 does not see
    # them), so the stand-in fits in memory
    "Mixtral-8x7B": (
        "mixtral",
        dict(
            hidden_size=4096,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=256,
            num_local_experts=8,
            num_experts_per_tok=2,
            max_position_embeddings=32768,
            rope_theta=1e6,
        ),
    ),
    "SmolLM3-3B": ("smollm3", SMOLLM3_3B),
    # one of its every-4th layers: no rotary, no positions at all in the scores
    "SmolLM3-3B, a layer without rotary": ("smollm3", {**SMOLLM3_3B, "no_rope_layers": [0]}),
    "granite-3.1-2b": (
        "granite",
        dict(
            hidden_size=2048,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=8192,
            max_position_embeddings=131072,
            rope_theta=5e6,
            attention_multiplier=0.015625,  # 1/hd, where a Llama has 1/√hd
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            rms_norm_eps=1e-5,
        ),
    ),
    "StarCoder2-3B": (
        "starcoder2",
        dict(
            hidden_size=3072,
            num_attention_heads=24,
            num_key_value_heads=2,
            intermediate_size=12288,
            max_position_embeddings=16384,
            rope_theta=999999.4420358813,
            sliding_window=4096,
            use_bias=True,
        ),
    ),
    "Phi-4-mini": (
        "phi3",
        dict(
            hidden_size=3072,
            num_attention_heads=24,
            num_key_value_heads=8,
            intermediate_size=8192,
            max_position_embeddings=131072,
            original_max_position_embeddings=4096,
            partial_rotary_factor=0.75,  # 96 of each head's 128 dimensions rotate
            # its longrope: short factors all 1 (the long ones act past 4096 tokens only), and
            # cos and sin scaled by √(1 + ln 32 / ln 4096) = 1.19
            rope_scaling=dict(
                rope_type="longrope",
                short_factor=[1.0] * 48,
                long_factor=[1.0] * 48,
                original_max_position_embeddings=4096,
            ),
            rope_theta=10000.0,
            sliding_window=262144,
        ),
    ),
    "BERT-base": (
        "bert",
        dict(
            hidden_size=768,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
        ),
    ),
}
# ALiBi's head 0 is its steepest: BLOOM-560m's falls 181 nats over a frame's 257 tokens, more
# than its random heads span (51: the atlas leaves it 0), MPT-7B's 215. These play on the
# gentlest slope (1 nat), as the atlas ranks them.
STAND_IN_OPTIONS = {
    # ALiBi's head 0 is its steepest (BLOOM's falls 181 nats across the frame): a weak display,
    # which the run says; --head best is what a user is told to run
    "BLOOM-560m, --head best": dict(head="best"),
    "MPT-7B, --head best": dict(head="best"),
    "OLMo-2-1B, spread as trained, --head best": dict(head="best"),
    "Qwen3-0.6B, spread as trained, --head best": dict(head="best"),
}
# Random init makes every direction of a head alike, which trained weights are not. These
# stand-ins are spread as trained ones are (`spread_as_trained`): no trained Qwen3 or OLMo 2 is
# to be had here, and a norm after the projection weighs its dimensions as trained.
SPREAD_AS_TRAINED = {
    "OLMo-2-1B, spread as trained, --head best",
    "Qwen3-0.6B, spread as trained, --head best",
}
# singular values of the query and key projections over e^±2.3 (100x), norm weights e^(0.7 z)
SPREAD_LOG_RANGE, SPREAD_NORM_LOG_STD, SPREAD_NORM_SCALE = 2.3, 0.7, 1.5
# real trained checkpoints: name -> (model_type, folder -> path, optimize() keywords)
REAL = {
    "SmolLM2-135M (real), default": ("llama", smollm2_checkpoint, {}),
    "SmolLM2-135M (real), best": ("llama", smollm2_checkpoint, dict(layer="best", head="best")),
    "all-MiniLM-L6-v2 (real), best": ("bert", lambda _: minilm_checkpoint(), dict(head="best")),
}
# the others: num_hidden_layers
LAYER_KEYS = {"gpt2": "n_layer", "gpt_neo": "num_layers", "bloom": "n_layer", "mpt": "n_layers"}


def write_stand_in(path: Path, model_type: str, shape: dict) -> Path:
    from transformers import AutoConfig, AutoModel

    layers = {LAYER_KEYS.get(model_type, "num_hidden_layers"): 1}
    # no padding row: a config's pad_token_id (SmolLM3's 128004) lies outside 16 tokens, and
    # inputs_embeds never look the table up
    config = AutoConfig.for_model(model_type, vocab_size=16, pad_token_id=None, **layers, **shape)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    return path


def spread_as_trained(path: Path) -> Path:
    """Rewrite a stand-in's query and key projections with their singular values spread
    log-uniformly over 100x (same singular vectors, same mean), and its norms after the
    projection (q_norm, k_norm) log-normal around 1.5, as trained heads are long and thin
    where random init is round (README: The display atlas)."""
    from safetensors.torch import load_file, save_file

    file = path / "model.safetensors"
    tensors = load_file(str(file))
    generator = torch.Generator().manual_seed(1)
    for name, tensor in tensors.items():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            left, singular, right = torch.linalg.svd(tensor.double(), full_matrices=False)
            logs = torch.empty(len(singular)).uniform_(
                -SPREAD_LOG_RANGE, SPREAD_LOG_RANGE, generator=generator
            )
            spread = singular.mean() * logs.double().exp()
            tensors[name] = ((left * spread) @ right).float().contiguous()
        if name.endswith(("q_norm.weight", "k_norm.weight")):
            logs = SPREAD_NORM_LOG_STD * torch.randn(len(tensor), generator=generator)
            tensors[name] = (SPREAD_NORM_SCALE * logs.exp()).contiguous()
    save_file(tensors, str(file), metadata={"format": "pt"})
    return path


def merged_rows(results: Path, rows: list[dict]) -> list[dict]:
    """The rows of `results` as they were, those of the stand-ins just run replaced (or added
    at the end): a run of some families keeps the others' figures. Each row says when, and on
    how many frames, it was measured (a file of one run said it once, for all its rows)."""
    if not results.exists():
        return rows
    earlier = json.loads(results.read_text())
    once = {
        key: earlier[key] for key in ("written", "frames", "size", "cpu_threads") if key in earlier
    }
    kept = [{**once, **row} for row in earlier["families"]]  # a row's own fields win
    fresh = {row["stand_in"]: row for row in rows}
    merged = [fresh.pop(row["stand_in"], row) for row in kept]
    return merged + list(fresh.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--families", help="comma-separated model_types (default: all)")
    parser.add_argument("--only", help="semicolon-separated stand-in names, of those families")
    parser.add_argument("--frames", type=int, default=24, help="frames of clips.dance_video")
    parser.add_argument("--size", type=int, default=256, help="frame side (even: H.264 4:2:0)")
    parser.add_argument("--device", default="auto", help="optimize()'s: auto, cpu, cuda or mps")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args()
    wanted = set(args.families.split(",")) if args.families else None
    every = {
        **{name: (kind, write, options) for name, (kind, write, options) in REAL.items()},
        **{
            name: (
                kind,
                lambda path, kind=kind, shape=shape, name=name: (
                    spread_as_trained(write_stand_in(path, kind, shape))
                    if name in SPREAD_AS_TRAINED
                    else write_stand_in(path, kind, shape)
                ),
                STAND_IN_OPTIONS.get(name, {}),
            )
            for name, (kind, shape) in STAND_INS.items()
        },
    }
    stand_ins = {name: spec for name, spec in every.items() if not wanted or spec[0] in wanted}
    if args.only:
        stand_ins = {name: stand_ins[name] for name in args.only.split(";")}
    print(
        f"{args.frames} frames of dance_video {args.size}x{args.size}, "
        f"{torch.get_num_threads()} CPU threads; stand-ins: {', '.join(stand_ins)}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        source = work / "frames"
        write_frames_folder(args.frames, args.size, 0, work, source)
        for name, (model_type, write, options) in stand_ins.items():
            path = write(work / name)
            frames_dir = work / f"frames-{model_type}-{len(rows)}"
            shutil.copytree(source, frames_dir)
            started = time.perf_counter()
            full_frame = name.endswith("full frame")
            metrics = optimize(
                model=str(path), frames_dir=str(frames_dir), device=args.device,
                full_frame=full_frame, **options,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            device = torch.device(metrics["device"])
            layer = metrics["settings"]["layer"]
            model = model_through_layer(open_checkpoint(str(path), layer), layer).to(device)
            numbers = list(range(1, args.frames + 1))
            layout = metrics["settings"]["layout"]
            scores = [
                layout_metrics(picture, target, layout)
                for _, picture, target in rendered_frames(
                    FramesDir(frames_dir), metrics, model, numbers, device
                )
            ]
            mae = np.array([score["mae"] for score in scores])
            corr = [score["corr"] for score in scores if score["corr"] is not None]
            checkpoint = open_checkpoint(str(path))
            row = {
                "stand_in": name,
                "model_type": model_type,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
                "frames": args.frames,
                "size": args.size,
                "cpu_threads": torch.get_num_threads(),
                "shape": {
                    "d_model": checkpoint.shape.d_model,
                    "heads": checkpoint.shape.heads,
                    "key_heads": checkpoint.shape.key_heads,
                    "head_dim": checkpoint.shape.head_dim,
                },
                "layout": layout,
                "layer": layer,
                "heads": metrics["settings"]["heads"],
                "tokens": metrics["settings"]["tokens"],
                "optimize_seconds_per_frame": seconds / args.frames,
                "solver_seconds_per_frame": float(
                    np.mean([record["seconds"] for record in metrics["frames"]])
                ),
                "solver_steps_mean": float(
                    np.mean([record["steps"] for record in metrics["frames"]])
                ),
                "mean_mae": float(mae.mean()),
                "worst_mae": float(mae.max()),
                "mean_corr": float(np.mean(corr)),
                "min_corr": float(np.min(corr)),
            }
            rows.append(row)
            print(json.dumps(row))
    record = {"families": merged_rows(args.out, rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print()
    print(
        "stand-in                       type      d     heads  key heads  hd   layer  layout  "
        "s/frame  steps  mae    worst  corr"
    )
    for row in rows:
        shape = row["shape"]
        print(
            f"{row['stand_in']:<30} {row['model_type']:<8} {shape['d_model']:5d} "
            f"{shape['heads']:5d}  {shape['key_heads']:9d}  {shape['head_dim']:3d}  "
            f"{row['layer']:5d}  "
            f"{row['layout']:<6}  {row['solver_seconds_per_frame']:7.3f}  "
            f"{row['solver_steps_mean']:5.0f}  {row['mean_mae']:.4f} "
            f"{row['worst_mae']:.4f} {row['mean_corr']:.4f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
