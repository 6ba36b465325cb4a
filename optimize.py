"""Stage 2: fit GPT-2's layer-0 attention to every target frame; render and score the maps.

    uv run python optimize.py                                  # GPT-2 XL, head 0, all frames
    uv run python optimize.py --model ./my-gpt2 --head 3 --frames 1:64 --verify 4

Reads frames/meta.json and frames/targets/*.png. Writes frames/output/frame_00001.png ... (RGB,
magma), frames/output/metrics.json and frames/embeddings/*.safetensors (the inputs_embeds).
Resumes: frames whose outputs exist are skipped (damaged ones are redone); --force redoes them.
Ctrl-C or kill stops it with exit code 130 and keeps every finished chunk. One run per folder:
frames/.lock refuses a second.
"""

import argparse

from badapple.cli import HelpFormatter
from badapple.errors import exit_on_error
from badapple.pipeline import DEFAULT_MODEL, optimize
from badapple.solvers import METHOD_DEFAULTS, SOLVERS, solver_settings


def _per_method(name: str) -> str:
    """The defaults of one setting, method by method, for --help."""
    return ", ".join(
        f"{getattr(settings, name):g} for {method}" for method, settings in METHOD_DEFAULTS.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id, or a local directory with config.json + *.safetensors",
    )
    parser.add_argument(
        "--method",
        choices=list(SOLVERS),
        default="reduced",
        help="solver: reduced (fast, on each row's queries and keys) or adam (the original's)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimisation steps per frame started at random ({_per_method('steps')}); "
        f"a frame started from its predecessor takes {_per_method('warm_steps')}",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help=f"learning rate ({_per_method('lr')})"
    )
    parser.add_argument(
        "--lr-min",
        type=float,
        default=None,
        help=f"learning rate at the end of each cosine cycle ({_per_method('lr_min')})",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help=f"std of the random starts ({_per_method('init_scale')})",
    )
    parser.add_argument("--head", type=int, default=0, help="layer-0 attention head to play on")
    parser.add_argument("--chunk-size", type=int, default=64, help="frames solved at once")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"random starts per frame; the best is refined ({_per_method('seeds')})",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default="auto",
        help="auto picks CUDA, then MPS, then CPU",
    )
    parser.add_argument(
        "--frames",
        default=None,
        metavar="START:END",
        help="only these frames, 1-based, both included (default: all)",
    )
    parser.add_argument(
        "--frames-dir", default="frames", metavar="DIR", help="folder shared by the four scripts"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; runs are reproducible on one device",
    )
    parser.add_argument("--force", action="store_true", help="redo frames whose outputs exist")
    parser.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="check N saved embeddings through transformers' GPT2Model",
    )
    args = parser.parse_args()
    # checked as they will run: a flag left out takes its method's default
    settings = solver_settings(
        args.method,
        steps=args.steps,
        lr=args.lr,
        lr_min=args.lr_min,
        init_scale=args.init_scale,
        seeds=args.seeds,
    )
    if settings.steps < 1:
        parser.error("--steps must be at least 1")
    if args.chunk_size < 1:
        parser.error("--chunk-size must be at least 1")
    if settings.seeds < 1:
        parser.error("--seeds must be at least 1")
    if settings.lr <= 0 or settings.lr_min < 0 or settings.lr_min > settings.lr:
        parser.error("need 0 <= --lr-min <= --lr and --lr > 0")
    if settings.init_scale <= 0:
        parser.error("--init-scale must be positive")
    if args.head < 0:
        parser.error("--head must be >= 0")
    if args.verify < 0:
        parser.error("--verify must be >= 0")
    with exit_on_error("optimize.py"):
        optimize(**vars(args))


if __name__ == "__main__":
    main()
