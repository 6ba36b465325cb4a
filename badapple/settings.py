"""A run's settings: its flags, meta.json and the checkpoint resolved into one `Run`.

Every default lives here (`DEFAULT_MODEL`, `DEFAULT_HEADS`; the solvers' in solvers.py), and
every check that can refuse a run before it solves: flags that do not go together, a model too
short for the frames, a target frame missing or damaged. `Run.solved_with` is what decides the
embeddings, as the chunk files and metrics.json record it; `as_flag` names a setting of it as
the flags that give it, for messages.
"""

import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from badapple.atlas import WEAK_SPAN_NATS, Atlas, measure_atlas
from badapple.checkpoint import Checkpoint, attention_layers_at_hand, open_checkpoint
from badapple.chunks import chunk_info
from badapple.errors import UserError
from badapple.head import HeadWeights, load_head
from badapple.layout import heads_per_channel, token_count
from badapple.look import Look
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS, DEFAULT_COLORMAP, RENDERS
from badapple.residual import LayerInput
from badapple.solvers import SOLVERS, SolverSettings, solver_settings
from badapple.storage import FramesDir, png_problem, read_json, read_targets
from badapple.survey import (
    Display,
    best_display,
    candidates,
    display_span,
    survey_displays,
    survey_frames,
)
from badapple.targets import DEFAULT_CONTRAST_NATS, PIXEL_TOLERANCE
from badapple.warm import METHOD_WARM_STARTS, WarmStarts

DEFAULT_MODEL = "openai-community/gpt2-xl"
# The heads a run plays on when --heads is not given: channel c on head c (R, G, B in colour),
# and in full frame the transposed channels on the heads after them.
DEFAULT_HEADS = {
    (1, "full"): (0, 1),  # A the frame, B its transpose
    (3, "half"): (0, 1, 2),  # R, G, B
    (3, "full"): (0, 1, 2, 3, 4, 5),  # A_R, A_G, A_B, B_R, B_G, B_B
}
CHANNEL_NAMES = {1: ("gray",), 3: ("R", "G", "B")}
DISPLAY_SETTINGS = ("blur", "colormap")  # change the pictures, not what is solved
# meta.json's record of where the targets come from (download.py's flags)
VIDEO_SETTINGS = ("source", "fps", "fit", "start", "duration", "frame_count")
# the solve settings that are optimize.py flags of the same name (the others are fixed defaults)
FLAG_SETTINGS = (
    "model",
    "layer",
    "render",
    "method",
    "steps",
    "lr",
    "lr_min",
    "init_scale",
    "seeds",
    "seed",
)


@dataclass(frozen=True)
class Run:
    """Everything a run has resolved before it solves: its folder, frames, weights and settings."""

    folder: FramesDir
    wanted: range  # the frames asked for
    size: int  # frame side in pixels
    checkpoint: Checkpoint
    layer: int  # the played layer
    heads: tuple[int, ...]  # the played heads, in the order of `layout.head_pictures`
    tokens: int  # a frame's sequence length: its rows, plus the sink under --render sink
    weights: HeadWeights  # of the played layer, on the solve device
    layer_input: LayerInput | None  # the blocks before a deeper played layer; None at layer 0
    device: torch.device
    look: Look
    method: str
    settings: SolverSettings  # of a frame solved from random starts
    warm: WarmStarts | None  # how frames start from their predecessors; None: never
    solved_with: dict  # what decides the embeddings: a chunk file of other ones is another run's
    display: dict  # what decides only the pictures (DISPLAY_SETTINGS)
    atlas: Atlas  # every head's span (atlas.py) of the layers at hand, the played one included
    # the displays --head best or --layer best tried, with their fit; [] for none
    survey: list[dict]


def pick_device(name: str) -> torch.device:
    """The torch device for --device auto|cpu|cuda|mps; auto prefers CUDA, then MPS, then CPU."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UserError("--device cuda, but torch sees no CUDA GPU; use --device cpu (or auto)")
    if name == "mps" and not mps:
        raise UserError("--device mps, but torch sees no Apple GPU; use --device cpu (or auto)")
    if name == "cpu" and cuda:
        warnings.warn("running on the CPU although a CUDA GPU is available", stacklevel=2)
    return torch.device(name)


def parse_frame_range(frames: str | None, frame_count: int) -> range:
    """--frames START:END (1-based, both included) as a range; None means every frame."""
    if frames is None:
        return range(1, frame_count + 1)
    start_text, _, end_text = frames.partition(":")
    try:
        start, end = int(start_text), int(end_text or start_text)
    except ValueError:
        raise UserError(f"--frames {frames}: expected START:END, e.g. 1:64") from None
    if start < 1:
        raise UserError(f"--frames {frames}: frames are numbered from 1, e.g. --frames 1:{end}")
    if start > end:
        raise UserError(
            f"--frames {frames}: START is after END; did you mean --frames {end}:{start}?"
        )
    if end > frame_count:
        raise UserError(f"--frames {frames}: the video has only {frame_count} frames")
    return range(start, end + 1)


def resolve(
    *,
    model: str,
    steps: int | None,
    lr: float | None,
    lr_min: float | None,
    init_scale: float | None,
    head: int | str | None,
    full_frame: bool,
    heads: tuple[int, ...] | None,
    layer: int | str,
    render: str,
    contrast: float | None,
    blur: float | None,
    colormap: str | None,
    seeds: int | None,
    method: str,
    device: str,
    frames: str | None,
    frames_dir: str,
    seed: int,
    force: bool = False,
) -> Run:
    """The run's settings, from its flags (optimize.py's, by name), meta.json and the
    checkpoint; every target checked."""
    if method not in SOLVERS:
        raise UserError(f"--method {method} is unknown; pick one of {', '.join(SOLVERS)}")
    if render not in RENDERS:
        raise UserError(f"--render {render} is unknown; pick one of {', '.join(RENDERS)}")
    folder = FramesDir(Path(frames_dir))
    meta = read_json(folder.meta)
    if meta is None:
        raise UserError(f"{folder.meta} not found; run download.py first")
    size, wanted = meta["size"], parse_frame_range(frames, meta["frame_count"])
    channels = meta.get("channels", 1)  # 1 gray, 3 colour (download.py --color)
    if channels == 3 and render != "sink":
        raise UserError(
            f"colour targets need --render sink: --render {render} shows each row's pattern, "
            "not its level, so three heads would not mix into the frame's colours"
        )
    if channels == 3 and colormap is not None:
        raise UserError(
            f"--colormap {colormap} is for gray runs: a colour run's channels are its heads' "
            "maps; drop --colormap"
        )
    colormap = DEFAULT_COLORMAP if channels == 1 and colormap is None else colormap
    settings = solver_settings(
        method,
        render,
        steps=steps,
        lr=lr,
        lr_min=lr_min,
        init_scale=init_scale,
        seeds=seeds,
        seed=seed,
    )
    if contrast is None and not (render == "zscore" and method == "adam"):
        contrast = DEFAULT_CONTRAST_NATS  # adam under zscore keeps the original's exact target
    blur = DEFAULT_BLUR_SIGMA_PIXELS[render] if blur is None else blur
    _check_targets(folder, wanted, size)
    torch_device = pick_device(device)

    # then the model (a hub one is fetched): what it is decides the layout and the heads
    checkpoint = open_checkpoint(model, 0 if layer == "best" else layer)
    playable = _playable_layers(checkpoint)
    if layer == "best":  # every layer's norm and query/key weights: ~31 MB a layer of GPT-2 XL
        checkpoint = open_checkpoint(model, 0, attention_layers=tuple(playable))
    causal = checkpoint.family.causal
    # a bidirectional head shows the whole square by itself: --full-frame or not
    layout = "full" if full_frame or not causal else "half"
    if not causal and render != "sink":
        raise UserError(
            f"--render {render} is for causal heads; {checkpoint.name} is a "
            f"{checkpoint.config['model_type']} model, whose heads show the whole square in "
            "true tone: drop --render"
        )
    one_head = channels == 1 and heads_per_channel(layout, causal) == 1
    if head == "best" and not one_head:
        raise UserError(
            "--head best picks the head of a gray picture on one head (half frame, or a "
            "bidirectional model's); for full frame or colour give --heads"
        )
    run_heads = _run_heads(channels, layout, None if head == "best" else head, heads, causal)
    tokens = token_count(size, render)
    positions = checkpoint.shape.positions
    if tokens > positions:
        raise UserError(
            f"frames of {size}x{size} need {tokens} positions under --render {render} (one a "
            f"row{', plus the sink' if tokens > size else ''}) but {checkpoint.name} has "
            f"{positions}; rerun download.py with --size {positions - (tokens - size)} or less"
        )
    warm = METHOD_WARM_STARTS[method]
    if warm is not None and render != "sink":  # a z-score picture's mae (~0.2) is no absolute
        warm = replace(warm, check_above_mae=None)
    look = Look(layout, render, contrast, blur, colormap, channels, causal)
    atlas = measure_atlas(
        checkpoint, [n for n in attention_layers_at_hand(checkpoint) if n in playable], tokens
    )
    solved_with = {
        # the targets: another video, part of it or frame rate is another run
        "video": {key: meta.get(key) for key in VIDEO_SETTINGS},
        "model": model,
        "model_type": checkpoint.config["model_type"],
        "model_commit": checkpoint.revision,
        "layer": layer,
        "layout": layout,
        "channels": channels,
        "heads": list(run_heads),
        "render": render,
        "contrast": contrast,
        "tolerance": PIXEL_TOLERANCE if render == "sink" else None,
        "tokens": tokens,
        "method": method,
        **asdict(settings),
        "warm_starts": asdict(warm) if warm else None,
    }
    survey = []
    if layer == "best" or head == "best":
        # a rerun or an extension plays where the run chose to (its chunk files say)
        display = None if force else earlier_display(folder, solved_with)
        if display is not None:
            print(
                f"playing layer {display.layer}, {playing(display.heads, channels, layout)}, "
                "as the frames already solved in this folder do (--force surveys again)"
            )
        else:
            layers = playable if layer == "best" else [layer]
            shown = None if head == "best" else run_heads
            displays = candidates(atlas, layers, shown, every_head=layer != "best")
            survey = _survey(
                folder,
                checkpoint,
                displays,
                atlas,
                tokens,
                torch_device,
                look,
                method,
                settings,
                wanted,
            )
            display = best_display(survey)
        if layer == "best":  # a hub model's blocks before the chosen layer are fetched now
            checkpoint = open_checkpoint(model, display.layer)
        layer, run_heads = display.layer, display.heads
        solved_with.update(layer=layer, heads=list(run_heads))
    else:
        _warn_if_weak(checkpoint, atlas, Display(layer, run_heads), one_head)
    weights = load_head(checkpoint, run_heads, tokens, layer).to(torch_device)  # heads checked
    if warm is not None and display_span(atlas, Display(layer, run_heads)) < WEAK_SPAN_NATS:
        # a weak display (atlas.py) shows no scene well: a long polish gains it little picture
        warm = replace(warm, steps=warm.steps_after_a_miss)
    return Run(
        folder=folder,
        wanted=wanted,
        size=size,
        checkpoint=checkpoint,
        layer=layer,
        heads=run_heads,
        tokens=tokens,
        weights=weights,
        layer_input=LayerInput(checkpoint, layer, torch_device) if layer else None,
        device=torch_device,
        look=look,
        method=method,
        settings=settings,
        warm=warm,
        solved_with=solved_with,
        display={"blur": blur, "colormap": colormap},
        atlas=atlas,
        survey=survey,
    )


def _playable_layers(checkpoint: Checkpoint) -> list[int]:
    """The layers a run can play: every one of a pre-LN model, layer 0 of a post-LN one (or of
    BLOOM, family.py)."""
    return list(range(checkpoint.shape.layers)) if checkpoint.family.deeper_layers else [0]


def earlier_display(folder: FramesDir, solved_with: dict) -> Display | None:
    """The layer and heads the chunk files of this run (the same settings but those two) were
    solved on: what --layer best or --head best chose before. None: nothing solved yet."""
    unchosen = {**solved_with, "layer": None, "heads": None}
    for path in sorted(folder.embeddings.glob("chunk_*.safetensors"), reverse=True):
        info = chunk_info(path)
        theirs = with_defaults(info.settings) if info else {}
        if theirs and {**theirs, "layer": None, "heads": None} == unchosen:
            return Display(theirs["layer"], tuple(theirs["heads"]))
    return None


def _survey(
    folder: FramesDir,
    checkpoint: Checkpoint,
    displays: list[Display],
    atlas: Atlas,
    tokens: int,
    device: torch.device,
    look: Look,
    method: str,
    settings: SolverSettings,
    wanted: range,
) -> list[dict]:
    """--head best, --layer best: the candidate displays tried on a few frames (survey.py),
    printed; the survey's records, each with its span."""
    frames = survey_frames(wanted)
    pictures = torch.from_numpy(read_targets(folder, frames, look.channels)).to(device)

    def weights_of(display: Display) -> HeadWeights:
        return load_head(checkpoint, display.heads, tokens, display.layer).to(device)

    layers = sorted({display.layer for display in displays})
    print(
        f"survey: {len(displays)} displays of layer{'s' if len(layers) > 1 else ''} "
        f"{', '.join(map(str, layers))} (by the atlas of {len(atlas.measured_layers())} layers), "
        f"each tried on frames {frames}"
    )
    survey = survey_displays(weights_of, displays, look, frames, pictures, method, settings)
    chosen = best_display(survey)
    for record, display in zip(survey, displays, strict=True):
        record["span_nats"] = round(display_span(atlas, display), 4)
        corr = "-" if record["corr"] is None else f"{record['corr']:.4f}"
        mark = "  <- plays the video" if display == chosen else ""
        print(
            f"  layer {display.layer:3d} {playing(display.heads, look.channels, look.layout)}: "
            f"span {record['span_nats']:7.2f} nats, mae {record['mae']:.4f}, corr {corr}{mark}"
        )
    return survey


def _warn_if_weak(checkpoint: Checkpoint, atlas: Atlas, display: Display, one_head: bool) -> None:
    """One line when the played display is weak (atlas.WEAK_SPAN_NATS), naming a better one
    where other layers are at hand, else --layer best."""
    if max(display.heads) >= atlas.heads:
        return  # a head out of range is refused as its weights are read, in one line
    span = display_span(atlas, display)
    if span >= WEAK_SPAN_NATS:
        return
    ranked = atlas.ranked()
    better = ""
    if one_head and ranked and ranked[0][2] >= WEAK_SPAN_NATS:
        # the shallowest strong head at hand: the cheapest to reach
        layer, head, wider = min(
            (entry for entry in ranked if entry[2] >= WEAK_SPAN_NATS), key=lambda e: (e[0], -e[2])
        )
        better = (
            f"layer {layer} head {head} spans {wider:.0f}: try --layer {layer} --head {head}, or "
        )
    heads = ", ".join(map(str, display.heads))
    warnings.warn(
        f"layer {display.layer} head{'s' if len(display.heads) > 1 else ''} {heads} of "
        f"{checkpoint.name} is a weak display: a typical score moves only {span:.2f} nats (under "
        f"{WEAK_SPAN_NATS:g}), so its pictures come out speckled; {better}"
        "--layer best --head best finds the best",
        stacklevel=3,
    )


def _check_targets(folder: FramesDir, wanted: range, size: int) -> None:
    """Refuse to start unless every wanted target frame is there, whole and size x size."""
    for frame in wanted:
        path = folder.target_png(frame)
        problem = png_problem(path, size)
        if problem == "missing":
            missing = [f for f in wanted if not folder.target_png(f).exists()]
            raise UserError(
                f"{folder.targets} lacks {len(missing)} of the {len(wanted)} target frames "
                f"wanted (first: {path.name}); rerun download.py --force"
            )
        if problem is not None:
            if not problem.startswith("damaged"):
                problem += " (meta.json's size)"
            raise UserError(f"{path} is {problem}; rerun download.py --force")


def _run_heads(
    channels: int,
    layout: str,
    head: int | None,
    heads: tuple[int, ...] | None,
    causal: bool = True,
) -> tuple[int, ...]:
    """The heads a run plays on, in the order of `layout.head_pictures`: --head for a gray
    picture on one head (half frame, or any bidirectional one), --heads (or `DEFAULT_HEADS`)
    otherwise, checked for count and repeats."""
    per_channel = heads_per_channel(layout, causal)
    if channels == 1 and per_channel == 1:
        if heads is not None:
            raise UserError(
                f"--heads {','.join(map(str, heads))} needs --full-frame or colour targets; "
                "a gray half-frame run plays on one --head (as does a bidirectional model)"
            )
        return (0 if head is None else head,)
    defaults = DEFAULT_HEADS[channels, layout if causal else "half"]
    if head is not None:
        kind = "colour" if channels == 3 else "full-frame"
        raise UserError(
            f"--head {head} is for a gray half-frame run; a {kind} run plays on --heads, "
            f"e.g. --heads {','.join(map(str, defaults))}"
        )
    wanted = channels * per_channel
    if heads is None:
        return defaults
    example = ",".join(map(str, defaults))
    kind = f"{'colour' if channels == 3 else 'gray'} {layout}-frame run"
    if len(heads) != wanted or len(set(heads)) != wanted:
        raise UserError(
            f"--heads {','.join(map(str, heads))}: a {kind} plays on {wanted} different heads, "
            f"e.g. --heads {example}"
        )
    return tuple(heads)


def playing(heads: tuple[int, ...], channels: int, layout: str) -> str:
    """What each head shows, for the start-up line: "heads 0 (R), 1 (G), 2 (B)"."""
    names = list(CHANNEL_NAMES[channels])
    if layout == "full" and len(heads) == 2 * channels:  # A and B; a bidirectional head is both
        names = [f"{n} of the frame" for n in names] + [f"{n} transposed" for n in names]
    if len(heads) == 1:
        return f"head {heads[0]}" + (" (the whole square)" if layout == "full" else "")
    shown = ", ".join(f"{h} ({n})" for h, n in zip(heads, names, strict=True))
    return f"heads {shown}, {layout} frame"


def with_defaults(settings: dict) -> dict:
    """A chunk file's settings, with what older versions did not record: a file from before
    --layer played layer 0, and one from before other families played GPT-2; their frames are
    kept."""
    if not settings:
        return settings
    return {"layer": 0, "model_type": "gpt2", **settings}


def as_flag(name: str, value) -> str:
    """A setting of `Run.solved_with` as the flags that give it, for messages."""
    if name == "video":
        return f"targets from {(value or {}).get('source')} (download.py)"
    if name == "layout":
        return "full frame (--full-frame)" if value == "full" else "half frame (no --full-frame)"
    if name == "channels":
        return "colour targets (download.py --color)" if value == 3 else "gray targets"
    if name == "contrast" and value is None:
        return "the original's target (no --contrast)"
    if name == "model_type":
        return f"a {value} model (--model)"
    if name == "model_commit":
        return f"--model at commit {value}"
    if name == "tokens":
        return f"{value} tokens (download.py --size, plus the sink under --render sink)"
    if name == "heads" and isinstance(value, list):
        return f"--heads {','.join(map(str, value))}" if len(value) > 1 else f"--head {value[0]}"
    if name in FLAG_SETTINGS:
        return f"--{name.replace('_', '-')} {value}"
    return f"{name} {value} (another version's default)"


ATLAS_SHOWN = 10  # displays --survey prints, widest first


def print_atlas(run: Run) -> None:
    """--survey: the widest displays of the layers at hand, each layer's widest, and what plays."""
    atlas = run.atlas
    ranked = atlas.ranked()
    print(
        f"display atlas of {run.checkpoint.name}: {len(ranked)} heads of "
        f"{len(atlas.measured_layers())} layers by span (nats a typical score can move; "
        f"under {WEAK_SPAN_NATS:g} is weak)"
    )
    for layer, head, span in ranked[:ATLAS_SHOWN]:
        print(f"  layer {layer:3d} head {head:3d}: span {span:8.2f}")
    widest = [
        max(range(atlas.heads), key=lambda h: atlas.span(layer, h))
        for layer in atlas.measured_layers()
    ]
    print(
        "each layer's widest head: "
        + ", ".join(
            f"{layer}:{head} ({atlas.span(layer, head):.1f})"
            for layer, head in zip(atlas.measured_layers(), widest, strict=True)
        )
    )
    print(f"plays: layer {run.layer}, {playing(run.heads, run.look.channels, run.look.layout)}")
