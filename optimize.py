"""Stage 2: fit a layer's attention to every target frame; render and score the maps.

    uv run python optimize.py                                  # GPT-2 XL, head 0, all frames
    uv run python optimize.py --model ./my-gpt2 --head 3 --frames 1:64 --verify 4
    uv run python optimize.py --full-frame --heads 0,1         # the whole square, two heads
    uv run python optimize.py --render zscore                  # the original's look
    uv run python optimize.py --full-frame                     # colour targets: heads 0..5
    uv run python optimize.py --layer 47 --head 3              # a head of GPT-2 XL's last layer
    uv run python optimize.py --model meta-llama/Llama-3.2-1B --head best   # another family
    uv run python optimize.py --model google-bert/bert-base-uncased     # the whole square

Reads frames/meta.json and frames/targets/*.png. Writes frames/embeddings/chunk_*.safetensors
(the inputs_embeds and the settings they were solved with: the record), and from them
frames/output/frame_00001.png ... (RGB, magma) and frames/output/metrics.json.
Half frame (the original's) shows the lower triangle of each frame on one head; --full-frame
shows it on head A and the transposed frame on head B, of the same forward pass, and stitches
A's map below the diagonal and B's transposed above it into the whole square.
True tone (--render sink, the default) puts an attention sink at token 0, so a frame of side T
takes T+1 tokens and each pixel shows its weight relative to its row's sink weight.
Colour targets (download.py --color) play R, G and B on three heads of one forward pass (six in
full frame), and the PNGs show each head's true-tone map as one channel.
--model takes GPT-2, Llama, Mistral, Qwen2, Gemma, GPT-NeoX (Pythia), GPT-Neo, OPT, BERT and
RoBERTa checkpoints; a bidirectional one (BERT) shows the whole square on one head.
--layer L plays on heads of layer L: its attention is solved as layer 0's is, then inputs are
found whose residual stream entering layer L gives it (blocks 0..L-1 run forward a few times).
Resumes: solved frames are not solved again, unless their target changed since (the chunk files
keep a digest of each); a missing or damaged PNG or metrics.json, or another --blur or
--colormap, is drawn again from the saved embeddings; --force solves again. Ctrl-C or kill stops
it with exit code 130 and keeps every finished chunk. One run per folder: frames/.lock refuses a
second, and a download.py on it.
"""

import argparse
import math

import matplotlib

from badapple.cli import HelpFormatter
from badapple.errors import exit_on_error
from badapple.family import SUPPORTED
from badapple.optimize import optimize
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS, DEFAULT_COLORMAP, RENDERS
from badapple.settings import DEFAULT_MODEL
from badapple.solvers import METHOD_DEFAULTS, SOLVERS, solver_settings
from badapple.targets import DEFAULT_CONTRAST_NATS
from badapple.warm import METHOD_WARM_STARTS

MAX_CONTRAST_NATS = 80.0  # e^-80: far below float32's resolution of a weight already
MAX_BLUR_SIGMA_PIXELS = 64.0  # a quarter of a 256-pixel frame: nothing is left to see


def _per_method(name: str) -> str:
    """The defaults of one setting, method by method, for --help."""
    return ", ".join(
        f"{getattr(settings, name):g} for {method}" for method, settings in METHOD_DEFAULTS.items()
    )


def _number_or_best(what: str):
    """The type of --head and --layer: a number >= 0, or best."""

    def parse(text: str) -> int | str:
        if text == "best":
            return text
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {what} number or best, not {text!r}"
            ) from None
        if number < 0:
            raise argparse.ArgumentTypeError(f"a {what} is >= 0")
        return number

    return parse


def _head_list(parser: argparse.ArgumentParser, text: str) -> tuple[int, ...]:
    """--heads A,B,... as different heads >= 0. How many a run needs depends on its targets
    (gray or colour, in meta.json), so optimize() checks the count; the checkpoint the range."""
    try:
        heads = tuple(int(part) for part in text.split(","))
    except ValueError:
        parser.error(f"--heads {text}: expected heads separated by commas, e.g. 0,1")
    if min(heads) < 0:
        parser.error(f"--heads {text}: heads must be >= 0")
    if len(set(heads)) != len(heads):
        parser.error(f"--heads {text}: each head may appear once")
    return heads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id, or a local directory with config.json + *.safetensors, of a supported "
        f"family ({', '.join(SUPPORTED)})",
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
        help=f"most optimisation steps of a frame started at random ({_per_method('steps')}); "
        "a frame stops once its loss has converged, and one started from its predecessor "
        f"takes at most {METHOD_WARM_STARTS['reduced'].steps} (reduced)",
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
    parser.add_argument(
        "--head",
        type=_number_or_best("head"),
        default=None,
        help="attention head of a gray half-frame run (default 0), or best: try every head of "
        "the layer on a few frames and play on the best; other runs take --heads",
    )
    parser.add_argument(
        "--layer",
        type=_number_or_best("layer"),
        default=0,
        help="the layer whose heads play the video (default 0, the original's); a deeper "
        "layer costs forwards through the layers before it; best: the display atlas ranks "
        "every head of every layer by its weights, a few are tried on a few frames, and the "
        "shallowest of the best plays",
    )
    parser.add_argument(
        "--survey",
        action="store_true",
        help="print the display atlas (with --layer best or --head best: the survey too) and "
        "stop, without solving the video",
    )
    parser.add_argument(
        "--full-frame",
        action="store_true",
        help="show the whole frame: its lower triangle on head A, the upper on head B",
    )
    parser.add_argument(
        "--heads",
        default=None,
        metavar="H,H,...",
        help="gray --full-frame: A,B, A shows the frame and B its transpose (default 0,1); "
        "colour targets: R,G,B (default 0,1,2), with --full-frame the frame's R,G,B then the "
        "transposed frame's (default 0,1,2,3,4,5)",
    )
    parser.add_argument(
        "--render",
        choices=RENDERS,
        default="sink",
        help="sink: true tone, each pixel its weight relative to an attention sink at token 0; "
        "zscore: the original's per-row z-score rendering (pattern, not level)",
    )
    parser.add_argument(
        "--contrast",
        type=float,
        default=None,
        metavar="NATS",
        help=f"nats from white down to black in the target (default {DEFAULT_CONTRAST_NATS:g}; "
        "adam under --render zscore aims at the original's exact target unless given)",
    )
    parser.add_argument(
        "--blur",
        type=float,
        default=None,
        metavar="SIGMA",
        help="gaussian blur of the picture, in pixels (default "
        + ", ".join(f"{sigma:g} for {name}" for name, sigma in DEFAULT_BLUR_SIGMA_PIXELS.items())
        + ")",
    )
    parser.add_argument(
        "--colormap",
        default=None,
        metavar="NAME",
        help=f"any matplotlib colormap for a gray run's picture, e.g. gray, viridis (default "
        f"{DEFAULT_COLORMAP}; a colour run shows its heads as R, G, B)",
    )
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
        help="check N saved embeddings through transformers' own model of the family",
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
    if not (0 <= settings.lr_min <= settings.lr < math.inf and settings.lr > 0):
        parser.error("need 0 <= --lr-min <= --lr and --lr > 0, finite numbers")
    if not 0 < settings.init_scale < math.inf:
        parser.error("--init-scale must be a positive finite number")
    args.heads = _head_list(parser, args.heads) if args.heads is not None else None
    if args.verify < 0:
        parser.error("--verify must be >= 0")
    # finite too: inf would end in a traceback, deep in the solver or the JSON writer
    if args.contrast is not None and not 0 < args.contrast <= MAX_CONTRAST_NATS:
        parser.error(
            f"--contrast {args.contrast:g}: must be a positive number of nats up to "
            f"{MAX_CONTRAST_NATS:g}, e.g. 6"
        )
    if args.blur is not None and not 0 <= args.blur <= MAX_BLUR_SIGMA_PIXELS:
        parser.error(f"--blur {args.blur:g}: must be 0 (none) to {MAX_BLUR_SIGMA_PIXELS:g} pixels")
    if args.colormap is not None and args.colormap not in matplotlib.colormaps:
        parser.error(
            f"--colormap {args.colormap}: not a matplotlib colormap; try magma, gray or viridis"
        )
    # with --force the same command would solve its frames again, not resume them
    resume = "run it without --force to resume" if args.force else "run the same command to resume"
    with exit_on_error("optimize.py", resume=resume):
        optimize(**vars(args))


if __name__ == "__main__":
    main()
