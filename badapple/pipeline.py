"""The four stages as library functions; each script's main() parses its flags and calls one.

    download  video -> frames/targets/*.png, frames/audio.m4a, frames/meta.json
    optimize  targets -> embeddings -> attention maps -> frames/output/*.png + metrics.json
    assemble  frames/output/*.png + audio -> the music video
    (plot lives in figures.py)

Keyword names are the scripts' flag names. Each stage skips work whose output is complete, and
writes every file atomically, so rerunning a stopped stage finishes it.
"""

import functools
import inspect
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from badapple import video
from badapple.checkpoint import open_checkpoint
from badapple.errors import DamagedFileError, UserError
from badapple.head import HeadWeights, attention_scores, causal_attention, load_head
from badapple.layout import (
    HEADS_PER_CHANNEL,
    channel_correlations,
    head_pictures,
    layout_metrics,
    layout_picture,
    token_count,
)
from badapple.metrics import mean_metrics
from badapple.render import DEFAULT_BLUR_SIGMA_PIXELS, DEFAULT_COLORMAP, RENDERS, colorize
from badapple.solvers import SOLVERS, SolverSettings, solve_frames, solver_settings
from badapple.storage import (
    FRAME_PATTERN,
    FramesDir,
    chunk_frames,
    frame_numbers,
    frames_lock,
    png_problem,
    read_embeddings,
    read_json,
    read_rgb_png,
    read_target_png,
    write_atomic,
    write_embeddings,
    write_json,
    write_png,
)
from badapple.targets import DEFAULT_CONTRAST_NATS, aimed_logits, logit_space_loss, target_logits
from badapple.verify import (
    PNG_TOLERANCE_LEVELS,
    TOLERANCE,
    one_layer_gpt2,
    transformers_attention,
)

BAD_APPLE_URL = "https://www.youtube.com/watch?v=FtutLA63Cp8"  # the original's video, 4:3, 30 fps
DEFAULT_MODEL = "openai-community/gpt2-xl"
OUTPUT_NAME = "bad_apple_attention.mp4"  # assemble.py's video
# The heads a run plays on when --heads is not given: channel c on head c (R, G, B in colour),
# and in full frame the transposed channels on the heads after them.
DEFAULT_HEADS = {
    (1, "full"): (0, 1),  # A the frame, B its transpose
    (3, "half"): (0, 1, 2),  # R, G, B
    (3, "full"): (0, 1, 2, 3, 4, 5),  # A_R, A_G, A_B, B_R, B_G, B_B
}
CHANNEL_NAMES = {1: ("gray",), 3: ("R", "G", "B")}
# The settings that decide what a frame's outputs are; a resumed run must share all of them:
# layout "half" or "full" (--full-frame), heads [--head] or the two of --heads, the render and
# its settings, and the solver's.
RUN_IDENTITY = (
    "model",
    "layout",
    "channels",
    "heads",
    "render",
    "contrast",
    "blur",
    "colormap",
    "method",
    *(field.name for field in fields(SolverSettings)),
)
# What `loss` in metrics.json measures, by render: the logit-space MSE of the scores (row-centred,
# over the causal entries) against the original's target, or against the sink target.
LOSS_KINDS = {
    "zscore": "original: logit MSE against log of the row-normalised frame",
    "sink": "sink: logit MSE against ln(pixel) relative to the sink, floored at -contrast",
}
STEP_REPORT_INTERVAL = 25  # steps between loss updates on the progress bar


def download(
    *,
    url: str = BAD_APPLE_URL,
    input: str | None = None,
    frames_dir: str = "frames",
    fps: float = 15,
    size: int = 256,
    fit: str = "stretch",
    start: float | None = None,
    duration: float | None = None,
    color: bool = False,
    force: bool = False,
) -> dict:
    """Turn a video into target frames, its soundtrack and meta.json; returns the meta.
    Targets are gray, or RGB with `color` (meta.json's "channels": 1 or 3)."""
    folder = FramesDir(Path(frames_dir))
    source = str(Path(input).expanduser().resolve()) if input else url
    settings = {
        "source": source,
        "fps": fps,
        "size": size,
        "fit": fit,
        "start": start,
        "duration": duration,
        "channels": 3 if color else 1,
    }
    try:
        meta = read_json(folder.meta)
    except DamagedFileError as error:
        warnings.warn(f"{error.path} is damaged; redoing the frames", stacklevel=2)
        meta = None
    if not force and meta and meta.get("channels", 1) != settings["channels"]:
        # the outputs of a run on the old targets would no longer match: replacing is a choice
        kinds = {1: "gray", 3: "colour"}
        raise UserError(
            f"{folder.root} holds {kinds[meta.get('channels', 1)]} targets; rerun with --force "
            f"to replace them with {kinds[settings['channels']]} ones, or use another --frames-dir"
        )
    if (
        not force
        and meta
        and {k: meta.get(k) for k in settings} == settings
        and len(frame_numbers(folder.targets)) == meta["frame_count"]
        and (folder.audio.exists() or not meta["audio"])
        and _targets_are_whole(folder, meta["frame_count"], size)
    ):
        print(f"{folder.targets} is up to date ({meta['frame_count']} frames); --force redoes it")
        return meta

    if input:
        source_video = Path(source)
        if not source_video.is_file():
            raise UserError(f"--input {input} not found; pass the path of a video file")
    else:
        source_video = folder.root / "source.mp4"
        if force or not source_video.exists():
            print(f"downloading {url}")
            folder.root.mkdir(parents=True, exist_ok=True)
            source_video = video.download_video(url, folder.root)
    info = video.probe(source_video)
    print(
        f"{source_video}: {info.width}x{info.height}, {info.fps:g} fps, "
        f"{info.duration_seconds:.1f} s; extracting frames at {fps:g} fps, {size}x{size} ({fit})"
    )

    # Frames go to a side folder that replaces the old one only once complete.
    staging = folder.root / "targets.part"
    shutil.rmtree(staging, ignore_errors=True)
    frame_count = video.extract_frames(
        source_video,
        staging,
        fps=fps,
        size=size,
        fit=fit,
        start_seconds=start,
        duration_seconds=duration,
        color=color,
    )
    shutil.rmtree(folder.targets, ignore_errors=True)
    staging.rename(folder.targets)

    has_audio = False
    if info.audio_codec is None:
        warnings.warn(f"{source_video} has no audio track; the video will be silent", stacklevel=2)
        folder.audio.unlink(missing_ok=True)
    else:
        write_atomic(
            folder.audio,
            lambda temporary: video.extract_audio(
                source_video, temporary, start_seconds=start, duration_seconds=duration
            ),
        )
        has_audio = True

    meta = {
        **settings,
        "frame_count": frame_count,
        "audio": has_audio,
        "source_width": info.width,
        "source_height": info.height,
    }
    write_json(folder.meta, meta)
    print(
        f"wrote {frame_count} frames to {folder.targets}"
        + (f" and the audio to {folder.audio}" if has_audio else "")
        + "; next: uv run python optimize.py"
    )
    return meta


def _targets_are_whole(folder: FramesDir, frame_count: int, size: int) -> bool:
    """Whether every target PNG decodes at size x size; the first that does not is reported."""
    for frame in range(1, frame_count + 1):
        problem = png_problem(folder.target_png(frame), size)
        if problem is not None:
            warnings.warn(
                f"{folder.target_png(frame)} is {problem}; redoing the frames", stacklevel=2
            )
            return False
    return True


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


@_holding_frames_lock
def optimize(
    *,
    model: str = DEFAULT_MODEL,
    steps: int | None = None,
    lr: float | None = None,
    lr_min: float | None = None,
    init_scale: float | None = None,
    head: int = 0,
    full_frame: bool = False,
    heads: tuple[int, ...] | None = None,
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
    """Fit every target frame, render its attention map, save it all; returns metrics.json.

    Solver settings left as None take the method's defaults (`solvers.METHOD_DEFAULTS`).
    Half frame (the original's) plays on `head`; `full_frame` plays the frame on heads[0] and
    its transpose on heads[1], and stitches the two maps into the whole square (layout.py).
    `render` "sink" (true tone) puts an attention sink in front of the frame's rows; "zscore"
    is the original's rendering (render.py). `contrast` None: 6 nats, or the original's exact
    target for adam under zscore; `blur` None: the render's default.
    """
    call = dict(locals())
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
    layout = "full" if full_frame else "half"
    run_heads = _run_heads(channels, layout, head, heads)
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
    # metrics.json records the settings that ran, defaults resolved, and the heads played on
    arguments = {
        **call,
        **asdict(settings),
        "layout": layout,
        "heads": list(run_heads),
        "channels": channels,
        "contrast": contrast,
        "blur": blur,
        "colormap": colormap,
    }
    _check_targets(folder, wanted, size)

    torch_device = pick_device(device)
    checkpoint = open_checkpoint(model)
    tokens = token_count(size, render)
    if tokens > checkpoint.n_positions:
        raise UserError(
            f"frames of {size}x{size} need {tokens} positions under --render {render} (one a "
            f"row{', plus the sink' if tokens > size else ''}) but {checkpoint.name} has "
            f"{checkpoint.n_positions}; rerun download.py with --size "
            f"{checkpoint.n_positions - (tokens - size)} or less"
        )
    weights = load_head(checkpoint, run_heads, tokens).to(torch_device)
    run = _Run(
        layout=layout,
        render=render,
        contrast=contrast,
        blur=blur,
        colormap=colormap,
        channels=channels,
    )

    metrics = _resumable_metrics(folder, arguments, force)
    records = {record["frame"]: record for record in metrics["frames"]}
    if force:
        records = {f: r for f, r in records.items() if f not in wanted}
        metrics.pop("total_seconds", None)  # the clock restarts with the frames it redoes
    todo = _frames_to_do(folder, wanted, records, size)
    redo = set(todo)
    records = {f: r for f, r in records.items() if f not in redo}  # stale or damaged ones
    playing = _playing(run_heads, channels, layout)
    print(
        f"{checkpoint.name}: d={checkpoint.n_embd}, {playing} of {checkpoint.n_head}; "
        f"render {render} ({tokens} tokens), method {method}, {settings.steps} steps"
        + (f" ({settings.warm_steps} from the previous frame)" if settings.warm_steps else "")
        + f", on {torch_device}"
    )
    print(
        f"frames {wanted.start}..{wanted.stop - 1}: {len(wanted) - len(todo)} done, "
        f"{len(todo)} to do in chunks of {chunk_size}"
    )

    started = time.perf_counter()
    metrics.update(
        args=arguments,
        layout=layout,
        heads=list(run_heads),
        channels=channels,
        render=render,
        contrast=contrast,
        blur=blur,
        colormap=colormap,
        tokens=tokens,
        loss_kind=LOSS_KINDS[render],
        device=str(torch_device),
        size=size,
        fps=meta["fps"],
    )
    solved: dict[int, torch.Tensor] = {}  # the last chunk's embeddings, warm starts of the next
    with tqdm(total=len(todo), unit="frame", dynamic_ncols=True) as bar:
        means_shown, steps_taken = _finished_means(records), 0

        def report(objective: float) -> None:
            # the objective the solver is at, beside the finished frames' means
            nonlocal steps_taken
            steps_taken += 1
            if steps_taken % STEP_REPORT_INTERVAL == 0:
                bar.set_postfix({**means_shown, "fitting": f"{objective:.4f}"})

        for chunk in solve_order(todo, chunk_size, warm=settings.warm_steps > 0):
            starts = _warm_starts(folder, chunk, solved, records) if settings.warm_steps else {}
            new_records, solved = _solve_chunk(
                folder, chunk, weights, run, method, settings, records, starts, report
            )
            records.update(new_records)
            means_shown = _finished_means(records)
            bar.set_postfix(means_shown)
            metrics["total_seconds"] = (
                metrics.get("total_seconds", 0.0) + time.perf_counter() - started
            )
            started = time.perf_counter()
            _write_metrics(folder, metrics, records)
            bar.update(len(chunk))

    if verify:
        metrics["verify"] = _verify(folder, checkpoint, weights, run, records, wanted, verify)
        _write_metrics(folder, metrics, records)
    means = metrics["means"]
    print(
        "means: "
        + ", ".join(f"{name} {value:.4f}" for name, value in means.items() if value is not None)
    )
    print(
        f"attention maps in {folder.output}, embeddings in {folder.embeddings}; "
        "next: uv run python assemble.py"
    )
    return metrics


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


def _frames_to_do(
    folder: FramesDir, wanted: range, records: dict[int, dict], size: int
) -> list[int]:
    """The wanted frames that lack a whole result: a record in metrics.json, an output PNG that
    decodes, and a chunk file that holds the frame's embedding. Damaged files are reported;
    a damaged chunk file is deleted, and every frame it held is recomputed."""
    held: dict[Path, set[int] | None] = {}  # chunk file -> its frames; None if unreadable
    todo = []
    for frame in wanted:
        record = records.get(frame)
        if record is None:
            todo.append(frame)
            continue
        chunk_file = folder.embeddings / record.get("embeddings", "?")
        if chunk_file not in held:
            held[chunk_file] = _readable_chunk(chunk_file)
        png = folder.output_png(frame)
        png_state = png_problem(png, size)
        if png_state is not None:
            warnings.warn(f"{png} is {png_state}; recomputing frame {frame}", stacklevel=2)
        elif held[chunk_file] is not None and frame not in held[chunk_file]:
            warnings.warn(f"{chunk_file} lacks frame {frame}; recomputing it", stacklevel=2)
        if png_state is not None or frame not in (held[chunk_file] or ()):
            todo.append(frame)
    return todo


def _readable_chunk(path: Path) -> set[int] | None:
    """The frames a chunk file holds; None (reported, and a damaged file deleted) if none."""
    frames = chunk_frames(path)
    if frames is None and path.is_file():
        path.unlink()
        warnings.warn(f"{path} is damaged; deleted it, its frames are recomputed", stacklevel=3)
    elif frames is None:
        warnings.warn(f"{path} is missing; its frames are recomputed", stacklevel=3)
    return frames


def _resumable_metrics(folder: FramesDir, arguments: dict, force: bool) -> dict:
    """The metrics of an earlier run to resume, or a fresh start when there is none.

    A run with other settings cannot be resumed (its frames would be mixed with ours): that is
    an error, unless --force, which clears its outputs. A damaged metrics.json is moved aside
    and its frames recomputed.
    """
    try:
        metrics = read_json(folder.metrics)
    except DamagedFileError as error:
        aside = error.path.with_name(error.path.name + ".damaged")
        os.replace(error.path, aside)
        warnings.warn(
            f"{error.path} is damaged; moved it to {aside.name}, its frames are recomputed",
            stacklevel=2,
        )
        return {"frames": []}
    if metrics is None:
        return {"frames": []}
    previous = _with_layout(metrics.get("args", {}))
    changed = [name for name in RUN_IDENTITY if previous.get(name) != arguments[name]]
    if not changed:
        return metrics
    if not force:
        name = changed[0]
        raise UserError(
            f"{folder.output} holds a run with {_as_flag(name, previous.get(name))}, "
            f"not {_as_flag(name, arguments[name])}; rerun with --force to "
            "replace it, or use another --frames-dir"
        )
    shutil.rmtree(folder.output, ignore_errors=True)
    shutil.rmtree(folder.embeddings, ignore_errors=True)
    return {"frames": []}


def _with_layout(arguments: dict) -> dict:
    """A run's recorded arguments, with the settings that runs from before a flag existed had:
    half frame on --head, the original's rendering."""
    earlier = {"layout": "half", "heads": [arguments.get("head", 0)], "render": "zscore"}
    earlier["channels"] = 1
    earlier.update(contrast=arguments.get("contrast_nats"), blur=1.5, colormap="magma")
    return {**earlier, **arguments}


def _as_flag(name: str, value) -> str:
    """A RUN_IDENTITY setting as the flags that give it, for messages: "--heads 0,1"."""
    if name == "layout":
        return "full frame (--full-frame)" if value == "full" else "half frame (no --full-frame)"
    if name == "channels":
        return "colour targets (download.py --color)" if value == 3 else "gray targets"
    if name == "contrast" and value is None:
        return "the original's target (no --contrast)"
    if name == "heads" and isinstance(value, list):
        return f"--heads {','.join(map(str, value))}" if len(value) > 1 else f"--head {value[0]}"
    return f"--{name.replace('_', '-')} {value}"


def solve_order(todo: list[int], chunk_size: int, *, warm: bool) -> list[list[int]]:
    """The frames to solve together, batch after batch.

    Without warm starts: consecutive chunks of `todo`. With them, a frame should start from its
    predecessor's solution, so `todo` is cut into `chunk_size` runs of consecutive frames and
    batch k holds the k-th frame of every run: frames from distant parts of the video, each
    following its own predecessor, which the batch before solved.
    """
    if not warm:
        return [todo[first : first + chunk_size] for first in range(0, len(todo), chunk_size)]
    run_length = -(-len(todo) // chunk_size) if todo else 0  # ceil
    runs = [todo[first : first + run_length] for first in range(0, len(todo), run_length or 1)]
    return [[run[k] for run in runs if k < len(run)] for k in range(run_length)]


def _warm_starts(
    folder: FramesDir, chunk: list[int], solved: dict[int, torch.Tensor], records: dict[int, dict]
) -> dict[int, torch.Tensor]:
    """Each frame's predecessor's embeddings [T, d], where there is one: from the last chunk, or
    from a chunk file an earlier run saved (a resumed run continues where it stopped)."""
    starts = {frame: solved[frame - 1] for frame in chunk if frame - 1 in solved}
    on_disk = [frame - 1 for frame in chunk if frame not in starts and frame - 1 in records]
    saved = _saved_embeddings(folder, on_disk, records)
    starts.update({frame + 1: embedding for frame, embedding in saved.items()})
    return starts


def _saved_embeddings(
    folder: FramesDir, frames: list[int], records: dict[int, dict]
) -> dict[int, torch.Tensor]:
    """The saved embeddings [T, d] of `frames`, each chunk file read once."""
    by_file: dict[str, list[int]] = {}
    for frame in frames:
        by_file.setdefault(records[frame]["embeddings"], []).append(frame)
    found = {}
    for name, wanted in by_file.items():
        saved_frames, embeddings = read_embeddings(folder.embeddings / name)
        row_of = {int(saved): row for row, saved in enumerate(saved_frames)}
        found.update({frame: embeddings[row_of[frame]] for frame in wanted if frame in row_of})
    return found


@dataclass(frozen=True)
class _Run:
    """How a run turns frames into targets and attention maps into pictures."""

    layout: str  # "half" or "full"
    render: str  # "sink" or "zscore"
    contrast: float | None  # nats from white to black in the target; None: the original's
    blur: float  # gaussian sigma in pixels, 0 for none
    colormap: str | None  # matplotlib's name, for gray runs; None in colour
    channels: int  # 1 gray, 3 colour

    def targets(self, pictures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits the solver fits, and those `loss` is reported against (LOSS_KINDS):
        frames [B, C, T, T] -> 2 x [B, H, T', T']."""
        maps = head_pictures(pictures, self.layout)  # [B, H, T, T]
        aimed = aimed_logits(maps, self.render, self.contrast)
        return aimed, (aimed if self.render == "sink" else target_logits(maps))

    def picture(self, attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame's maps [H, T', T'] as its picture [C, T, T] in [0, 1] and the PNG's
        pixels [T, T, 3] uint8: the colormap's for gray, each channel its head's in colour."""
        picture = layout_picture(attention, self.layout, self.render, self.blur)
        if self.channels == 1:
            return picture, colorize(picture[0], self.colormap)
        return picture, np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)


def _run_heads(
    channels: int, layout: str, head: int, heads: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The heads a run plays on, in the order of `layout.head_pictures`: --head for a gray half
    frame, --heads (or `DEFAULT_HEADS`) otherwise, checked for count and repeats."""
    if channels == 1 and layout == "half":
        if heads is not None:
            raise UserError(
                f"--heads {','.join(map(str, heads))} needs --full-frame or colour targets; "
                "a gray half-frame run plays on one --head"
            )
        return (head,)
    wanted = channels * HEADS_PER_CHANNEL[layout]
    if heads is None:
        return DEFAULT_HEADS[channels, layout]
    example = ",".join(map(str, DEFAULT_HEADS[channels, layout]))
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
    if layout == "full":
        names = [f"{n} of the frame" for n in names] + [f"{n} transposed" for n in names]
    if len(heads) == 1:
        return f"head {heads[0]}"
    shown = ", ".join(f"{h} ({n})" for h, n in zip(heads, names, strict=True))
    return f"heads {shown}, {layout} frame"


def _finished_means(records: dict[int, dict]) -> dict[str, str]:
    """The progress bar's figures: the finished frames' means, as the summary prints them."""
    means = mean_metrics(list(records.values()))
    return {name: f"{means[name]:.4f}" for name in ("loss", "corr") if means[name] is not None}


def _solve_chunk(
    folder: FramesDir,
    chunk: list[int],
    weights: HeadWeights,
    run: _Run,
    method: str,
    settings: SolverSettings,
    records: dict[int, dict],
    starts: dict[int, torch.Tensor],
    report: Callable[[float], None],
) -> tuple[dict[int, dict], dict[int, torch.Tensor]]:
    """Solve, save and render one chunk of frames, those in `starts` from their start.

    Returns the frames' metric records and their embeddings ({frame: [T, d]}).
    """
    # [B, C, T, T]; every target was checked (whole, size x size) before the run started
    pictures = np.stack([read_target_png(folder.target_png(f), run.channels) for f in chunk])
    device = weights.position.device
    aimed, reported = run.targets(torch.from_numpy(pictures).to(device))  # [B, H, T', T']

    started = time.perf_counter()
    solution = solve_frames(method, weights, aimed, chunk, settings, report, starts)
    embeddings = solution.embeddings  # [B, T', d]
    with torch.no_grad():
        scores = attention_scores(embeddings, weights)  # [B, H, T', T']
        attention = causal_attention(scores).cpu().numpy()
        head_losses = logit_space_loss(scores, reported).cpu()  # [B, H]
    seconds_per_frame = (time.perf_counter() - started) / len(chunk)

    chunk_file = _chunk_path(folder, chunk, records)
    write_embeddings(
        chunk_file,
        torch.tensor(chunk),
        embeddings,
        metadata={
            "settings": str(asdict(settings)),
            "heads": str(weights.heads),
            "layout": run.layout,
            "render": run.render,
        },
    )
    new_records = {}
    for index, frame in enumerate(chunk):
        picture, pixels = run.picture(attention[index])  # [C, T, T], [T, T, 3]
        write_png(folder.output_png(frame), pixels)
        new_records[frame] = {
            "frame": frame,
            "loss": float(head_losses[index].mean()),  # LOSS_KINDS[render], the mean over heads
            "loss_per_head": head_losses[index].tolist(),  # in the order of `heads`
            "seconds": seconds_per_frame,
            **layout_metrics(picture, pictures[index], run.layout),
            # in colour, each channel's corr too (R, G, B)
            **(
                {"corr_per_channel": channel_correlations(picture, pictures[index], run.layout)}
                if run.channels == 3
                else {}
            ),
            "embeddings": chunk_file.name,
        }
    return new_records, dict(zip(chunk, embeddings, strict=True))


def _chunk_path(folder: FramesDir, chunk: list[int], records: dict[int, dict]) -> Path:
    """A file name for a chunk's embeddings that no other frame's record still points to."""
    in_use = {r["embeddings"] for f, r in records.items() if f not in chunk}
    name = f"frames_{chunk[0]:05d}-{chunk[-1]:05d}"
    candidate, copy = folder.embeddings / f"{name}.safetensors", 1
    while candidate.name in in_use:
        copy += 1
        candidate = folder.embeddings / f"{name}_{copy}.safetensors"
    return candidate


def _write_metrics(folder: FramesDir, metrics: dict, records: dict[int, dict]) -> None:
    metrics["frames"] = [records[frame] for frame in sorted(records)]
    metrics["frame_count"] = len(records)
    metrics["means"] = mean_metrics(metrics["frames"])
    write_json(folder.metrics, metrics)


def _verify(
    folder: FramesDir,
    checkpoint,
    weights: HeadWeights,
    run: _Run,
    records: dict[int, dict],
    wanted: range,
    count: int,
) -> dict:
    """Check `count` saved frames through transformers' GPT2Model, every head of the run from
    one forward pass of the saved embeddings (sink token included): its attention must match
    ours, and its rendering must be the saved PNG. Raise on a mismatch."""
    done = [f for f in wanted if f in records]
    chosen = [
        done[i] for i in np.linspace(0, len(done) - 1, min(count, len(done))).round().astype(int)
    ]
    model = one_layer_gpt2(checkpoint)
    cpu_weights = weights.to("cpu")
    saved = _saved_embeddings(folder, chosen, records)
    if len(saved) < len(chosen):
        lost = min(set(chosen) - saved.keys())
        raise UserError(
            f"frame {lost}'s embeddings are not in {records[lost]['embeddings']}; "
            "rerun optimize.py to recompute it"
        )
    worst, worst_png, worst_frame = 0.0, 0.0, chosen[0]
    for frame, embedding in saved.items():
        embedding = embedding[None]  # [1, T', d]
        reference = transformers_attention(model, embedding, weights.heads)  # [1, H, T', T']
        with torch.no_grad():
            ours = causal_attention(attention_scores(embedding, cpu_weights))
        worst = max(worst, float((reference - ours).abs().max()))
        _, pixels = run.picture(reference[0].numpy())  # [T, T, 3] uint8
        saved_pixels = read_rgb_png(folder.output_png(frame))
        png_difference = float(np.abs(pixels.astype(np.float64) - saved_pixels).mean())
        if png_difference >= worst_png:
            worst_png, worst_frame = png_difference, frame
    heads = ", ".join(map(str, weights.heads))
    print(
        f"verify: {len(chosen)} frames through transformers' GPT2Model, layer 0 "
        f"head{'s' if len(weights.heads) > 1 else ''} {heads}: "
        f"max |attention difference| = {worst:.2e} (tolerance {TOLERANCE:g}); "
        f"PNGs differ from its rendering by at most {worst_png:.3f} gray levels on average "
        f"(tolerance {PNG_TOLERANCE_LEVELS:g})"
    )
    if worst > TOLERANCE:
        raise UserError(
            f"verification failed: transformers' attention differs by {worst:.2e} "
            f"> {TOLERANCE:g}; the saved embeddings do not reproduce the maps"
        )
    if worst_png >= PNG_TOLERANCE_LEVELS:
        raise UserError(
            f"verification failed: {folder.output_png(worst_frame)} differs from the rendering "
            f"of its embeddings by {worst_png:.2f} gray levels on average; rerun optimize.py "
            "--force to redo it"
        )
    return {
        "frames": chosen,
        "heads": list(weights.heads),
        "max_abs_difference": worst,
        "tolerance": TOLERANCE,
        "max_png_difference_levels": worst_png,
        "png_tolerance_levels": PNG_TOLERANCE_LEVELS,
    }


def assemble(
    *,
    frames_dir: str = "frames",
    output: str = OUTPUT_NAME,
    fps: float | None = None,
    scale: int = 4,
    side_by_side: bool = False,
) -> Path:
    """Encode the attention maps (and the audio) into an H.264 mp4; returns its path."""
    folder = FramesDir(Path(frames_dir))
    meta = read_json(folder.meta)
    if meta is None:
        raise UserError(f"{folder.meta} not found; run download.py and optimize.py first")
    out_path = Path(output)
    if out_path.is_dir():
        raise UserError(
            f"--output {output} is a folder; name the video file, e.g. {out_path / OUTPUT_NAME}"
        )
    frame_count = meta["frame_count"]
    present = set(frame_numbers(folder.output))
    if not present:
        raise UserError(f"no attention maps in {folder.output}; run optimize.py first")
    missing = [f for f in range(1, frame_count + 1) if f not in present]
    if missing:
        raise UserError(
            f"{folder.output} lacks {len(missing)} of {frame_count} frames (first: "
            f"{missing[0]}); run optimize.py to finish them (it resumes)"
        )
    for frame in range(1, frame_count + 1):
        problem = png_problem(folder.output_png(frame))
        if problem is not None:
            raise UserError(
                f"{folder.output_png(frame)} is {problem}; run optimize.py, which recomputes it"
            )
    if side_by_side and len(frame_numbers(folder.targets)) < frame_count:
        raise UserError(f"{folder.targets} is incomplete; rerun download.py for --side-by-side")
    audio = folder.audio if folder.audio.exists() else None
    write_atomic(
        out_path,
        lambda temporary: video.encode_video(
            folder.output / FRAME_PATTERN,
            temporary,
            fps=fps or meta["fps"],
            scale=scale,
            audio=audio,
            side_by_side_pattern=folder.targets / FRAME_PATTERN if side_by_side else None,
        ),
    )
    print(
        f"wrote {out_path} ({frame_count} frames"
        + (", with audio)" if audio else ", silent)")
        + "; next: uv run python plot.py"
    )
    return out_path
