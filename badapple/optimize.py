"""Stage 2, optimize.py: targets -> embeddings -> attention maps -> pictures.

    frames/embeddings/chunk_*.safetensors  what is solved, with its settings (chunks.py): the
                                           one record of the run
    frames/output/frame_00001.png ...      the pictures, rendered from those embeddings
    frames/output/metrics.json             settings, and per frame its figures

A run solves the wanted frames no chunk file holds with its settings, then renders every solved
frame whose PNG or record is missing, damaged or drawn with other display settings (--blur,
--colormap): re-rendering takes milliseconds a frame, re-solving seconds. --force solves the
wanted frames again. Keyword names are optimize.py's flag names.
"""

import functools
import inspect
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from badapple.checkpoint import Checkpoint, open_checkpoint
from badapple.chunks import (
    chunk_info,
    chunk_number,
    next_chunk_path,
    saved_inputs_embeds,
    write_chunk,
)
from badapple.errors import DamagedFileError, UserError
from badapple.head import HeadWeights, attention_scores, attention_weights, load_head
from badapple.layout import (
    channel_correlations,
    head_pictures,
    heads_per_channel,
    layout_metrics,
    layout_picture,
    token_count,
)
from badapple.metrics import mean_metrics
from badapple.reachable import Factored, reachable_space, whiten_embeddings
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS, DEFAULT_COLORMAP, RENDERS, colorize
from badapple.residual import CONVERGED_ERROR, LayerInput, reach_layer
from badapple.solvers import SOLVERS, Solution, SolverSettings, solve_frames, solver_settings
from badapple.storage import (
    FramesDir,
    frames_lock,
    png_problem,
    read_json,
    read_target_png,
    write_json,
    write_png,
)
from badapple.survey import best_head, survey_frames, survey_heads
from badapple.targets import (
    DEFAULT_CONTRAST_NATS,
    PIXEL_TOLERANCE,
    Target,
    aimed_target,
    fit_loss,
    target_logits,
)
from badapple.verify import verify_frames
from badapple.warm import (
    METHOD_WARM_STARTS,
    Predecessor,
    WarmStarts,
    solve_batch,
    solve_order,
    warm_settings,
)

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
# What `loss` in metrics.json measures, by render: the logit-space MSE of the scores (row-centred,
# over the causal entries) against the original's target, or against the sink target.
LOSS_KINDS = {
    "zscore": "original: logit MSE against log of the row-normalised frame",
    "sink": "sink: mean squared distance of each pixel's logit relative to the sink to the "
    "range that shows it right (targets.shown_range)",
}
# a record's facts of how its frame was solved, not drawn: how it started and its steps, and at a
# deeper layer how its inputs reached the layer (residual.py)
SOLVE_FACTS = ("start", "steps", "reach_steps", "reach_scale", "reach_error")


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
STEP_REPORT_INTERVAL = 25  # steps between updates of the progress bar's objective
RENDER_BATCH = 64  # frames rendered from a chunk file at once


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


def _holding_frames_lock(function: Callable[..., dict]) -> Callable[..., dict]:
    """Run `function` holding the lock of its `frames_dir`, so that two runs never write the
    same files; a second run is refused with a message naming the first one's PID. With the
    lock held, any temporary file there was left by a run that died: it is deleted."""
    default_dir = inspect.signature(function).parameters["frames_dir"].default

    @functools.wraps(function)
    def locked(**kwargs) -> dict:
        root = Path(kwargs.get("frames_dir", default_dir))
        if not root.is_dir():  # nothing to guard: the run stops at the missing meta.json
            return function(**kwargs)
        with frames_lock(root):
            for stale in (*root.glob("output/*.part"), *root.glob("embeddings/*.part")):
                stale.unlink()
            return function(**kwargs)

    return locked


@dataclass(frozen=True)
class Look:
    """How a run turns frames into targets, and attention maps into pictures."""

    layout: str  # "half" or "full"
    render: str  # "sink" or "zscore"
    contrast: float | None  # nats from white to black in the target; None: the original's
    blur: float  # gaussian sigma in pixels, 0 for none
    colormap: str | None  # matplotlib's name, for gray runs; None in colour
    channels: int  # 1 gray, 3 colour
    causal: bool = True  # False: bidirectional heads, each a channel's whole square

    def aimed(self, pictures: torch.Tensor) -> Target:
        """What the solver fits: frames [B, C, T, T] -> targets of [B, H, T', T']."""
        heads = head_pictures(pictures, self.layout, self.causal)
        return aimed_target(heads, self.render, self.contrast, self.causal)

    def reported(self, pictures: torch.Tensor) -> Target:
        """What `loss` in metrics.json is measured against (LOSS_KINDS): under sink what is
        fitted, under zscore the original's target."""
        if self.render == "sink":
            return self.aimed(pictures)
        return target_logits(head_pictures(pictures, self.layout))

    def judge(
        self, weights: HeadWeights, pictures: torch.Tensor, embeddings: torch.Tensor
    ) -> list[dict]:
        """Each frame's picture and figures, from its embeddings [B, T', d] and its target frame
        [B, C, T, T] on the weights' device: records with "pixels", the PNG's [T, T, 3] uint8,
        which `_write_pngs` takes out."""
        reported = self.reported(pictures)
        with torch.no_grad():
            scores = attention_scores(embeddings, weights)  # [B, H, T', T']
            attention = attention_weights(scores, self.causal).cpu().numpy()
            head_losses = fit_loss(scores, reported).cpu()  # [B, H]
        targets = pictures.cpu().numpy()
        records = []
        for index, maps in enumerate(attention):
            picture, pixels = self.picture(maps)  # [C, T, T], [T, T, 3]
            record = {
                "loss": float(head_losses[index].mean()),  # LOSS_KINDS[render], mean over heads
                "loss_per_head": head_losses[index].tolist(),  # in the order of `heads`
                **layout_metrics(picture, targets[index], self.layout),
                "pixels": pixels,
            }
            if self.channels == 3:  # each channel's corr too, R G B
                record["corr_per_channel"] = channel_correlations(
                    picture, targets[index], self.layout
                )
            records.append(record)
        return records

    def picture(self, attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame's maps [H, T', T'] as its picture [C, T, T] in [0, 1] and the PNG's
        pixels [T, T, 3] uint8: the colormap's for gray, each channel its head's in colour."""
        picture = layout_picture(attention, self.layout, self.render, self.blur, self.causal)
        if self.channels == 1:
            return picture, colorize(picture[0], self.colormap)
        return picture, np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)


@dataclass(frozen=True)
class Run:
    """Everything a run has resolved before it solves: its folder, frames, weights and settings."""

    folder: FramesDir
    wanted: range  # the frames asked for
    size: int  # frame side in pixels
    checkpoint: Checkpoint
    weights: HeadWeights  # of the played layer, on the solve device
    layer_input: LayerInput | None  # the blocks before a deeper played layer; None at layer 0
    device: torch.device
    look: Look
    method: str
    settings: SolverSettings  # of a frame solved from random starts
    warm: WarmStarts | None  # how frames start from their predecessors; None: never
    solved_with: dict  # what decides the embeddings: a chunk file of other ones is another run's
    display: dict  # what decides only the pictures (DISPLAY_SETTINGS)
    head_survey: list[dict] | None = None  # --head best's: each head's fit, in head order


@dataclass(frozen=True)
class Solved:
    """A solved batch: what its chunk file keeps, what the played layer sees, its records."""

    saved: torch.Tensor | Factored  # the inputs_embeds [B, T', d], or their compact exact form
    rows: torch.Tensor  # [B, T', d] the played layer's input (at layer 0 the inputs_embeds)
    records: list[dict]  # `Look.judge`'s, with SOLVE_FACTS


@dataclass
class Plan:
    """What a run does: which solved frames it keeps, renders again and solves. Updated as it
    goes: `held` and `records` always describe what is on disk."""

    held: dict[int, Path]  # frame -> the chunk file that holds it
    todo: list[int]  # frames to solve
    rerender: list[int]  # solved frames whose PNG or record must be drawn again
    records: dict[int, dict]  # frame -> its record in metrics.json
    previous_seconds: float  # the optimisation time of the frames kept


@_holding_frames_lock
def optimize(
    *,
    model: str = DEFAULT_MODEL,
    steps: int | None = None,
    lr: float | None = None,
    lr_min: float | None = None,
    init_scale: float | None = None,
    head: int | str | None = None,
    full_frame: bool = False,
    heads: tuple[int, ...] | None = None,
    layer: int = 0,
    render: str = "sink",
    contrast: float | None = None,
    blur: float | None = None,
    colormap: str | None = None,
    chunk_size: int = 64,
    seeds: int | None = None,
    method: str = "reduced",
    device: str = "auto",
    frames: str | None = None,
    frames_dir: str = "frames",
    seed: int = 0,
    force: bool = False,
    verify: int = 0,
) -> dict:
    """Fit every target frame, save the embeddings, render the maps; returns metrics.json.

    Solver settings left as None take the method's defaults (`solvers.METHOD_DEFAULTS`).
    Half frame (the original's) plays on `head` (None: 0); `full_frame` plays the frame on
    heads[0] and its transpose on heads[1], and stitches the two maps into the whole square.
    Colour targets (download.py --color) play R, G, B on three heads (six in full frame), all of
    `layer` (0: the original's; a deeper one through the blocks before it, residual.py).
    `render` "sink" (true tone) puts an attention sink in front of the frame's rows; "zscore"
    is the original's rendering (render.py). `contrast` None: 6 nats, or the original's exact
    target for adam under zscore; `blur` None: the render's default.
    """
    run = _resolve(**locals())
    plan = _plan(run, force, chunk_size)
    metrics = _start_metrics(run, plan, force)
    _render_again(run, plan, metrics)
    _solve(run, plan, metrics, chunk_size)
    _finish(run, plan, metrics, verify)
    return metrics


def _resolve(
    *,
    model: str,
    steps: int | None,
    lr: float | None,
    lr_min: float | None,
    init_scale: float | None,
    head: int | str | None,
    full_frame: bool,
    heads: tuple[int, ...] | None,
    layer: int,
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
    **_: object,  # the flags later steps take
) -> Run:
    """The run's settings, from its flags, meta.json and the checkpoint; every target checked."""
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
        method, steps=steps, lr=lr, lr_min=lr_min, init_scale=init_scale, seeds=seeds, seed=seed
    )
    if contrast is None and not (render == "zscore" and method == "adam"):
        contrast = DEFAULT_CONTRAST_NATS  # adam under zscore keeps the original's exact target
    blur = DEFAULT_BLUR_SIGMA_PIXELS[render] if blur is None else blur
    _check_targets(folder, wanted, size)
    torch_device = pick_device(device)

    # then the model (a hub one is fetched): what it is decides the layout and the heads
    checkpoint = open_checkpoint(model, layer)
    causal = checkpoint.family.causal
    # a bidirectional head shows the whole square by itself: --full-frame or not
    layout = "full" if full_frame or not causal else "half"
    if not causal and render != "sink":
        raise UserError(
            f"--render {render} is for causal heads; {checkpoint.name} is a "
            f"{checkpoint.config['model_type']} model, whose heads show the whole square in "
            "true tone: drop --render"
        )
    if head == "best" and (channels != 1 or heads_per_channel(layout, causal) != 1):
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
    survey = None
    if head == "best":
        survey = _survey(
            folder, checkpoint, layer, tokens, torch_device, look, method, settings, wanted
        )
        run_heads = (best_head(survey),)
    return Run(
        folder=folder,
        wanted=wanted,
        size=size,
        checkpoint=checkpoint,
        weights=load_head(checkpoint, run_heads, tokens, layer).to(torch_device),
        layer_input=LayerInput(checkpoint, layer, torch_device) if layer else None,
        device=torch_device,
        look=look,
        method=method,
        settings=settings,
        warm=warm,
        solved_with={
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
        },
        display={"blur": blur, "colormap": colormap},
        head_survey=survey,
    )


def _survey(
    folder: FramesDir,
    checkpoint: Checkpoint,
    layer: int,
    tokens: int,
    device: torch.device,
    look: Look,
    method: str,
    settings: SolverSettings,
    wanted: range,
) -> list[dict]:
    """--head best: every head of the layer tried on a few frames (survey.py), printed."""
    frames = survey_frames(wanted)
    pictures = _targets(folder, frames, 1).to(device)

    def head_weights(head: int) -> HeadWeights:
        return load_head(checkpoint, (head,), tokens, layer).to(device)

    heads = checkpoint.shape.heads
    print(f"--head best: {heads} heads of layer {layer}, each tried on frames {frames}")
    survey = survey_heads(head_weights, heads, look, frames, pictures, method, settings)
    best = best_head(survey)
    for record in survey:
        corr = "-" if record["corr"] is None else f"{record['corr']:.4f}"
        mark = "  <- plays the video" if record["head"] == best else ""
        print(f"  head {record['head']:3d}: mae {record['mae']:.4f}, corr {corr}{mark}")
    return survey


def _plan(run: Run, force: bool, chunk_size: int) -> Plan:
    """Which frames are solved (and kept), which are drawn again, which are solved; printed."""
    held = _solved_frames(run.folder, run.solved_with, force)  # frame -> its chunk file
    if force:
        held = {frame: path for frame, path in held.items() if frame not in run.wanted}
    todo = [frame for frame in run.wanted if frame not in held]
    metrics = _previous_metrics(run.folder)
    records = _valid_records(run.folder, metrics, run.solved_with, run.display, held, run.size)
    rerender = sorted(frame for frame in held if frame not in records)
    checkpoint, settings, warm = run.checkpoint, run.settings, run.warm
    print(
        f"{checkpoint.name} ({checkpoint.config['model_type']}): d={checkpoint.shape.d_model}, "
        f"layer {run.solved_with['layer']} of {checkpoint.shape.layers}, "
        f"{_playing(run.weights.heads, run.look.channels, run.look.layout)} of "
        f"{checkpoint.shape.heads}; render {run.look.render} ({run.solved_with['tokens']} tokens), "
        f"method {run.method}, up to {settings.steps} steps"
        + (f" ({warm.steps} from the previous frame)" if warm else "")
        + f", on {run.device}"
    )
    print(
        f"frames {run.wanted.start}..{run.wanted.stop - 1}: {len(run.wanted) - len(todo)} done, "
        f"{len(todo)} to do in chunks of {chunk_size}"
        + (f"; {len(rerender)} solved frames to render again" if rerender else "")
    )
    return Plan(
        held=held,
        todo=todo,
        rerender=rerender,
        records=records,
        previous_seconds=0.0 if force else metrics.get("total_seconds", 0.0),
    )


def _start_metrics(run: Run, plan: Plan, force: bool) -> dict:
    """metrics.json as this run starts it: the settings once, the records still valid.

    Written before drawing: a stopped re-render then leaves records that say which pictures
    are drawn the new way, so no rerun trusts a picture drawn the old way.
    """
    metrics = {
        "settings": run.solved_with,
        "display": run.display,
        "loss_kind": LOSS_KINDS[run.look.render],
        "device": str(run.device),
        "total_seconds": plan.previous_seconds,  # the clock restarts with --force
    }
    if run.head_survey is not None:
        metrics["head_survey"] = run.head_survey
    _write_metrics(run.folder, metrics, plan.records)
    return metrics


def _render_again(run: Run, plan: Plan, metrics: dict) -> None:
    """Draw the solved frames of `plan.rerender` from their chunk files, without solving."""
    for path, chunk, embeddings in saved_inputs_embeds(plan.held, plan.rerender):  # [n, T', d]
        info = chunk_info(path)
        for first in range(0, len(chunk), RENDER_BATCH):
            batch = chunk[first : first + RENDER_BATCH]
            pictures = _targets(run.folder, batch, run.look.channels).to(run.device)
            rows = _played_rows(run, embeddings[first : first + RENDER_BATCH].to(run.device))
            records = run.look.judge(run.weights, pictures, rows)
            _write_pngs(run, batch, records)
            for frame, record in zip(batch, records, strict=True):
                plan.records[frame] = {
                    **record,
                    **info.solve_facts[frame],
                    "seconds": info.seconds_per_frame,
                    "embeddings": path.name,
                }
            _write_metrics(run.folder, metrics, plan.records)


def _solve(run: Run, plan: Plan, metrics: dict, chunk_size: int) -> None:
    """Solve `plan.todo` batch after batch (warm.py's order and starts), each batch saved as a
    chunk file, then drawn; metrics.json after each."""
    started = time.perf_counter()
    solved: dict[int, Predecessor] = {}  # the last batch's frames, predecessors of the next
    with tqdm(total=len(plan.todo), unit="frame", dynamic_ncols=True) as bar:
        means_shown, steps_taken = _finished_means(plan.records), 0

        def report(objective: float) -> None:
            # the objective the solver is at, beside the finished frames' means
            nonlocal steps_taken
            steps_taken += 1
            if steps_taken % STEP_REPORT_INTERVAL == 0:
                bar.set_postfix({**means_shown, "fitting": f"{objective:.4f}"})

        for batch in solve_order(plan.todo, chunk_size, warm=run.warm is not None):
            solved_at = time.perf_counter()
            pictures = _targets(run.folder, batch, run.look.channels).to(run.device)  # [B,C,T,T]
            predecessors = _predecessors(run, plan, batch, solved) if run.warm else {}
            done = solve_video_batch(
                run.method, run.weights, run.look, run.settings, run.warm, batch, pictures,
                predecessors, report, run.layer_input,
            )  # fmt: skip
            seconds = (time.perf_counter() - solved_at) / len(batch)
            path = next_chunk_path(run.folder.embeddings)
            records = done.records
            write_chunk(path, batch, done.saved, run.solved_with, seconds, _solve_facts(records))
            plan.held.update(dict.fromkeys(batch, path))
            _warn_unreached(run, batch, records)
            _write_pngs(run, batch, records)
            solved = {}  # this batch's frames only: the older ones are no predecessors now
            for frame, record, rows, picture in zip(
                batch, records, done.rows, pictures, strict=True
            ):
                plan.records[frame] = {**record, "seconds": seconds, "embeddings": path.name}
                solved[frame] = Predecessor(rows, picture, record["mae"])
            metrics["total_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            _write_metrics(run.folder, metrics, plan.records)
            means_shown = _finished_means(plan.records)
            bar.set_postfix(means_shown)
            bar.update(len(batch))
    _drop_unused_chunks(run.folder, plan.held)


def solve_video_batch(
    method: str,
    weights: HeadWeights,
    look: Look,
    settings: SolverSettings,
    warm: WarmStarts | None,
    batch: list[int],
    pictures: torch.Tensor,
    predecessors: dict[int, Predecessor],
    report: Callable[[float], None],
    layer_input: LayerInput | None = None,
) -> Solved:
    """One batch of a video, as optimize.py solves it: frames [B] and their targets
    [B, C, T, T] by warm.py's policy from the `predecessors` found (their played layer's rows),
    on the played layer's `weights`; at a deeper layer the solution is then reached through
    `layer_input`'s blocks (residual.py), and every picture drawn from what the inputs give."""
    aimed = look.aimed(pictures)
    start_settings = warm_settings(settings, warm) if warm else None

    def solve(frames: list[int], starts: dict[int, torch.Tensor]) -> Solution:
        index = [batch.index(frame) for frame in frames]
        return solve_frames(
            method, weights, aimed[index], frames, settings, report, starts, start_settings
        )

    # The policy judges the picture before any blur: --blur changes the pictures, never what is
    # solved. With a blur, the kept frames are then drawn again as shown.
    unblurred = replace(look, blur=0.0)

    def judge(frames: list[int], solution: Solution) -> list[dict]:
        index = [batch.index(frame) for frame in frames]
        return unblurred.judge(weights, pictures[index], solution.embeddings)

    solution, records = solve_batch(batch, pictures, predecessors, warm, solve, judge)
    saved, rows, facts = solution.factored or solution.embeddings, solution.embeddings, None
    if layer_input is not None:
        space = reachable_space(weights)
        reached = reach_layer(
            layer_input, whiten_embeddings(solution.embeddings, space, weights), space, weights
        )
        saved, rows = reached.inputs, reached.rows
        facts = [
            {**fact, "reach_steps": steps, "reach_scale": scale, "reach_error": error}
            for fact, steps, scale, error in zip(
                _solve_facts(records),
                reached.steps.tolist(),
                reached.scale.tolist(),
                reached.error.tolist(),
                strict=True,
            )
        ]
    elif look.blur:
        facts = _solve_facts(records)
    if facts is not None:  # drawn again: as shown, from what the layer sees
        shown = look.judge(weights, pictures, rows)
        records = [{**drawn, **fact} for drawn, fact in zip(shown, facts, strict=True)]
    return Solved(saved=saved, rows=rows, records=records)


def _finish(run: Run, plan: Plan, metrics: dict, verify: int) -> None:
    """--verify through transformers, then the summary and what to run next."""
    if verify:
        metrics["verify"] = verify_frames(
            run.folder, run.checkpoint, run.weights, run.look.picture, plan.held, run.wanted,
            verify, run.layer_input,
        )  # fmt: skip
        _write_metrics(run.folder, metrics, plan.records)
    means = metrics["means"]
    print(
        "means: "
        + ", ".join(f"{name} {value:.4f}" for name, value in means.items() if value is not None)
    )
    print(
        f"attention maps in {run.folder.output}, embeddings in {run.folder.embeddings}; "
        "next: uv run python assemble.py"
    )


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


def _playing(heads: tuple[int, ...], channels: int, layout: str) -> str:
    """What each head shows, for the start-up line: "heads 0 (R), 1 (G), 2 (B)"."""
    names = list(CHANNEL_NAMES[channels])
    if layout == "full" and len(heads) == 2 * channels:  # A and B; a bidirectional head is both
        names = [f"{n} of the frame" for n in names] + [f"{n} transposed" for n in names]
    if len(heads) == 1:
        return f"head {heads[0]}" + (" (the whole square)" if layout == "full" else "")
    shown = ", ".join(f"{h} ({n})" for h, n in zip(heads, names, strict=True))
    return f"heads {shown}, {layout} frame"


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


def _solved_frames(folder: FramesDir, solved_with: dict, force: bool) -> dict[int, Path]:
    """Each frame a chunk file holds with these settings -> the newest such file.

    A damaged chunk file is reported and deleted (its frames are solved again). A file of
    another run (other settings, or an older version's format) cannot be mixed with ours: an
    error, unless --force, which deletes it and the pictures drawn from it.
    """
    held: dict[Path, list[int]] = {}
    others = []
    for path in sorted(folder.embeddings.glob("*.safetensors")):
        info = chunk_info(path)
        if info is None and chunk_number(path) is not None:
            path.unlink()
            warnings.warn(
                f"{path} is damaged; deleted it, its frames are solved again", stacklevel=3
            )
        elif info is None or _with_defaults(info.settings) != solved_with:
            others.append((path, _with_defaults(info.settings) if info else {}))
        else:
            held[path] = info.frames
    if others and not force:
        path, theirs = others[0]
        name = next((n for n in solved_with if theirs.get(n) != solved_with[n]), "model")
        ours = _as_flag(name, solved_with.get(name))
        which = (
            f"a run with {_as_flag(name, theirs.get(name))}, not {ours}"
            if theirs and set(solved_with) <= set(theirs)  # else settings it did not have
            else "embeddings from an older optimize.py"
        )
        raise UserError(
            f"{folder.embeddings} holds {which} ({path.name}); rerun with --force to replace "
            "it, or use another --frames-dir"
        )
    if others:
        for path, _ in others:
            path.unlink()
        shutil.rmtree(folder.output, ignore_errors=True)  # its pictures are no longer ours
    newest = {}
    # oldest first, so that a newer file wins; a file not named by us counts as the oldest
    for path in sorted(held, key=lambda path: chunk_number(path) or 0):
        newest.update(dict.fromkeys(held[path], path))
    return newest


def _with_defaults(settings: dict) -> dict:
    """A chunk file's settings, with what older versions did not record: a file from before
    --layer played layer 0, and one from before other families played GPT-2; their frames are
    kept."""
    if not settings:
        return settings
    return {"layer": 0, "model_type": "gpt2", **settings}


def _as_flag(name: str, value) -> str:
    """A setting of `_solved_frames`' identity as the flags that give it, for messages."""
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


def _previous_metrics(folder: FramesDir) -> dict:
    """metrics.json of an earlier run, or a fresh one; a damaged one is moved aside (its
    frames are rendered again from their chunk files)."""
    try:
        metrics = read_json(folder.metrics)
    except DamagedFileError as error:
        aside = error.path.with_name(error.path.name + ".damaged")
        os.replace(error.path, aside)
        warnings.warn(
            f"{error.path} is damaged; moved it to {aside.name}, its frames are rendered again",
            stacklevel=3,
        )
        return {"frames": []}
    return metrics or {"frames": []}


def _valid_records(
    folder: FramesDir,
    metrics: dict,
    solved_with: dict,
    display: dict,
    held: dict[int, Path],
    size: int,
) -> dict[int, dict]:
    """The records of metrics.json that still describe a solved frame's PNG: same settings and
    display, drawn from the chunk file that holds the frame now, PNG whole. Damaged PNGs are
    reported."""
    if metrics.get("settings") != solved_with or metrics.get("display") != display:
        return {}  # another run's, or drawn another way: every picture is drawn again
    records = {}
    for record in metrics.get("frames", []):
        frame = record.get("frame")
        if frame not in held or record.get("embeddings") != held[frame].name:
            continue
        problem = png_problem(folder.output_png(frame), size)
        if problem is not None:
            if problem != "missing":
                warnings.warn(
                    f"{folder.output_png(frame)} is {problem}; rendering frame {frame} again",
                    stacklevel=3,
                )
            continue
        records[frame] = record
    return records


def _targets(folder: FramesDir, frames: list[int], channels: int) -> torch.Tensor:
    """The target frames, [B, C, T, T] in [0, 1]; every one was checked before the run."""
    return torch.from_numpy(
        np.stack([read_target_png(folder.target_png(f), channels) for f in frames])
    )


def _predecessors(
    run: Run, plan: Plan, batch: list[int], solved: dict[int, Predecessor]
) -> dict[int, Predecessor]:
    """Each frame's predecessor, where it is solved: from the last batch, or from a chunk file
    an earlier run saved (a resumed run continues where it stopped)."""
    found = {frame: solved[frame - 1] for frame in batch if frame - 1 in solved}
    on_disk = [frame - 1 for frame in batch if frame not in found and frame - 1 in plan.held]
    for _, predecessors, embeddings in saved_inputs_embeds(plan.held, on_disk):
        pictures = _targets(run.folder, predecessors, run.look.channels)
        played = _played_rows(run, embeddings.to(run.device))
        for frame, rows, picture in zip(predecessors, played, pictures, strict=True):
            mae = plan.records.get(frame, {}).get("mae")
            found[frame + 1] = Predecessor(rows, picture.to(run.device), mae)
    return found


def _played_rows(run: Run, embeddings: torch.Tensor) -> torch.Tensor:
    """What the played layer sees of inputs_embeds [B, T', d]: themselves at layer 0, the
    residual stream entering it deeper."""
    return run.layer_input(embeddings) if run.layer_input else embeddings


def _solve_facts(records: list[dict]) -> list[dict]:
    """Each record's SOLVE_FACTS: how its frame was solved, kept in its chunk file."""
    return [{name: record[name] for name in SOLVE_FACTS if name in record} for record in records]


def _warn_unreached(run: Run, frames: list[int], records: list[dict]) -> None:
    """Say which frames' inputs did not reach the deeper layer to float precision: their
    pictures are what the inputs give, not what was solved."""
    missed = [(f, r["reach_error"]) for f, r in zip(frames, records, strict=True)
              if r.get("reach_error", 0.0) > CONVERGED_ERROR]  # fmt: skip
    if missed:
        frame, error = max(missed, key=lambda item: item[1])
        warnings.warn(
            f"{len(missed)} frames' inputs reach layer {run.solved_with['layer']} only to a "
            f"relative error above {CONVERGED_ERROR:g} (worst: frame {frame}, {error:.1e}); "
            "their pictures are drawn from what the inputs give",
            stacklevel=3,
        )


def _write_pngs(run: Run, frames: list[int], records: list[dict]) -> None:
    """Write each frame's PNG, taking its pixels out of its record."""
    for frame, record in zip(frames, records, strict=True):
        write_png(run.folder.output_png(frame), record.pop("pixels"))


def _drop_unused_chunks(folder: FramesDir, held: dict[int, Path]) -> None:
    """Delete chunk files none of whose frames they are the record of any more (all solved
    again, with --force, into newer files)."""
    used = set(held.values())
    for path in folder.embeddings.glob("chunk_*.safetensors"):
        if path not in used:
            path.unlink()


def _finished_means(records: dict[int, dict]) -> dict[str, str]:
    """The progress bar's figures: the finished frames' means, as the summary prints them."""
    means = mean_metrics(list(records.values()))
    return {name: f"{means[name]:.4f}" for name in ("loss", "corr") if means[name] is not None}


def _write_metrics(folder: FramesDir, metrics: dict, records: dict[int, dict]) -> None:
    metrics["frames"] = [{"frame": frame, **records[frame]} for frame in sorted(records)]
    metrics["frame_count"] = len(records)
    metrics["means"] = mean_metrics(metrics["frames"])
    write_json(folder.metrics, metrics)
