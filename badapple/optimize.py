"""Stage 2, optimize.py: targets -> embeddings -> attention maps -> pictures.

    frames/embeddings/chunk_*.safetensors  what is solved, with its settings (chunks.py): the
                                           one record of the run
    frames/output/frame_00001.png ...      the pictures, rendered from those embeddings
    frames/output/metrics.json             settings, and per frame its figures

A run solves the wanted frames no chunk file holds with its settings and their current targets,
then renders every solved frame whose PNG or record is missing, damaged or drawn with other
display settings (--blur, --colormap): re-rendering takes milliseconds a frame, re-solving
seconds. --force solves the wanted frames again. Keyword names are optimize.py's flag names.

This module is the loop that reads and writes; the rest is elsewhere: the settings resolved
into a `Run` (settings.py), what earlier runs left (resume.py), a batch's solve (batch.py), and
how frames become targets and maps pictures (look.py).
"""

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from badapple.batch import played_rows, predecessors, solve_facts, solve_video_batch, warn_unreached
from badapple.chunks import (
    chunk_info,
    next_chunk_path,
    saved_inputs_embeds,
    target_digest,
    write_chunk,
)
from badapple.look import LOSS_KINDS
from badapple.metrics import mean_metrics
from badapple.resume import (
    changed_targets,
    drop_unused_chunks,
    previous_metrics,
    solved_frames,
    valid_records,
)
from badapple.settings import DEFAULT_MODEL, Run, playing, print_atlas, resolve
from badapple.storage import FramesDir, frames_lock, read_targets, write_json, write_png
from badapple.verify import verify_frames
from badapple.warm import Predecessor, scene_cold_mae, solve_order

STEP_REPORT_INTERVAL = 25  # steps between updates of the progress bar's objective
RENDER_BATCH = 64  # frames rendered from a chunk file at once


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
    layer: int | str = 0,
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
    survey: bool = False,
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
    run = resolve(
        model=model,
        steps=steps,
        lr=lr,
        lr_min=lr_min,
        init_scale=init_scale,
        head=head,
        full_frame=full_frame,
        heads=heads,
        layer=layer,
        render=render,
        contrast=contrast,
        blur=blur,
        colormap=colormap,
        seeds=seeds,
        method=method,
        device=device,
        frames=frames,
        frames_dir=frames_dir,
        seed=seed,
        force=force,
    )
    if survey:  # the atlas and the survey were printed: no solve
        print_atlas(run)
        return {"display_atlas": run.atlas.as_json(run.survey)}
    plan = _plan(run, force, chunk_size)
    metrics = _start_metrics(run, plan, force)
    _render_again(run, plan, metrics)
    _solve(run, plan, metrics, chunk_size)
    _finish(run, plan, metrics, verify)
    return metrics


def _plan(run: Run, force: bool, chunk_size: int) -> Plan:
    """Which frames are solved (and kept), which are drawn again, which are solved; printed. A
    solved frame whose target changed since is solved again."""
    held = solved_frames(run.folder, run.solved_with, force)  # frame -> its chunk file
    if force:
        held = {frame: path for frame, path in held.items() if frame not in run.wanted}
    # a frame whose target changed since it was solved is solved again, not kept
    changed = changed_targets(run.folder, held, run.wanted, run.look.channels)
    for frame in changed:
        del held[frame]
    todo = [frame for frame in run.wanted if frame not in held]
    metrics = previous_metrics(run.folder)
    records = valid_records(run.folder, metrics, run.solved_with, run.display, held, run.size)
    rerender = sorted(frame for frame in held if frame not in records)
    checkpoint, settings, warm = run.checkpoint, run.settings, run.warm
    print(
        f"{checkpoint.name} ({checkpoint.config['model_type']}): d={checkpoint.shape.d_model}, "
        f"layer {run.layer} of {checkpoint.shape.layers}, "
        f"{playing(run.heads, run.look.channels, run.look.layout)} of "
        f"{checkpoint.shape.heads}; render {run.look.render} ({run.tokens} tokens), "
        f"method {run.method}, up to {settings.steps} steps"
        + (f" ({warm.steps} from the previous frame)" if warm else "")
        + f", on {run.device}"
    )
    if changed:
        print(
            f"{len(changed)} frames' targets changed since they were solved (first: frame "
            f"{changed[0]}); solving them again"
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
    metrics["display_atlas"] = run.atlas.as_json(run.survey)
    _write_metrics(run.folder, metrics, plan.records)
    return metrics


def _render_again(run: Run, plan: Plan, metrics: dict) -> None:
    """Draw the solved frames of `plan.rerender` from their chunk files, without solving."""
    for path, chunk, embeddings in saved_inputs_embeds(plan.held, plan.rerender):  # [n, T', d]
        info = chunk_info(path)
        for first in range(0, len(chunk), RENDER_BATCH):
            batch = chunk[first : first + RENDER_BATCH]
            pictures = torch.from_numpy(read_targets(run.folder, batch, run.look.channels))
            pictures = pictures.to(run.device)  # [B, C, T, T]
            rows = played_rows(run, embeddings[first : first + RENDER_BATCH].to(run.device))
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
            targets = read_targets(run.folder, batch, run.look.channels)  # [B, C, T, T]
            pictures = torch.from_numpy(targets).to(run.device)
            found = predecessors(run, plan.held, plan.records, batch, solved) if run.warm else {}
            done = solve_video_batch(
                run.method, run.weights, run.look, run.settings, run.warm, batch, pictures,
                found, report, run.layer_input,
            )  # fmt: skip
            seconds = (time.perf_counter() - solved_at) / len(batch)
            path = next_chunk_path(run.folder.embeddings)
            records = done.records
            digests = [target_digest(target) for target in targets]  # what each was solved for
            write_chunk(
                path, batch, done.saved, run.solved_with, seconds, solve_facts(records), digests
            )
            plan.held.update(dict.fromkeys(batch, path))
            warn_unreached(run.layer, batch, records)
            _write_pngs(run, batch, records)
            solved = {}  # this batch's frames only: the older ones are no predecessors now
            for frame, record, mae, rows, picture in zip(
                batch, records, done.policy_maes, done.rows, pictures, strict=True
            ):
                plan.records[frame] = {**record, "seconds": seconds, "embeddings": path.name}
                cold_mae = scene_cold_mae({**record, "mae": mae}, found.get(frame))
                solved[frame] = Predecessor(rows, picture, mae, cold_mae)
            metrics["total_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            _write_metrics(run.folder, metrics, plan.records)
            means_shown = _finished_means(plan.records)
            bar.set_postfix(means_shown)
            bar.update(len(batch))
    drop_unused_chunks(run.folder, plan.held)


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


def _write_pngs(run: Run, frames: list[int], records: list[dict]) -> None:
    """Write each frame's PNG, taking its pixels out of its record."""
    for frame, record in zip(frames, records, strict=True):
        write_png(run.folder.output_png(frame), record.pop("pixels"))


def _finished_means(records: dict[int, dict]) -> dict[str, str]:
    """The progress bar's figures: the finished frames' means, as the summary prints them."""
    means = mean_metrics(list(records.values()))
    return {name: f"{means[name]:.4f}" for name in ("loss", "corr") if means[name] is not None}


def _write_metrics(folder: FramesDir, metrics: dict, records: dict[int, dict]) -> None:
    metrics["frames"] = [{"frame": frame, **records[frame]} for frame in sorted(records)]
    metrics["frame_count"] = len(records)
    metrics["means"] = mean_metrics(metrics["frames"])
    write_json(folder.metrics, metrics)
