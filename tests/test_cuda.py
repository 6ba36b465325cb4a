"""Our forward, the solver and optimize.py on a CUDA GPU, each held against the CPU; skipped
where torch sees no GPU."""

import json

import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.head import attention_scores, attention_weights, load_head
from badapple.metrics import picture_metrics
from badapple.render import sink_picture
from badapple.solvers import METHOD_DEFAULTS, solve_reduced
from badapple.targets import DEFAULT_CONTRAST_NATS, shown_range
from badapple.verify import model_through_layer, transformers_attention
from tests.scripts import FPS, SIZE, assert_ok, run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def block_frames(frames: int, size: int) -> torch.Tensor:
    """A white block moving right on black: [frames, 1, size, size]."""
    clip = torch.zeros(frames, 1, size, size)
    for index in range(frames):
        clip[index, 0, size // 2 :, index : index + size // 4] = 1.0
    return clip


def test_the_forward_on_the_gpu_equals_the_cpus(tiny_checkpoint):
    weights = load_head(open_checkpoint(str(tiny_checkpoint)), (0, 2), tokens=33)
    embeddings = torch.randn(4, 33, 64, generator=torch.Generator().manual_seed(0))
    on_cpu = attention_weights(attention_scores(embeddings, weights))
    on_gpu = attention_weights(attention_scores(embeddings.cuda(), weights.to("cuda")))
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu() - on_cpu).abs().max() < 1e-5


def test_the_solver_on_the_gpu_finds_what_the_cpu_finds(tiny_checkpoint):
    """Same frames, same seeds: the GPU's embeddings are GPT-2 inputs (transformers on the CPU
    reproduces their maps) and show the frames as well as the CPU's do."""
    checkpoint = open_checkpoint(str(tiny_checkpoint))
    weights = load_head(checkpoint, (0,), tokens=33)  # the sink and 32 rows
    clip = block_frames(3, 32)
    targets = shown_range(clip, DEFAULT_CONTRAST_NATS)  # [3, 1, 33, 33]
    settings = METHOD_DEFAULTS["reduced"]
    on_gpu = solve_reduced(
        weights.to("cuda"), targets.to("cuda"), [1, 2, 3], settings, lambda loss: 0
    )
    on_cpu = solve_reduced(weights, targets, [1, 2, 3], settings, lambda loss: None)
    assert on_gpu.embeddings.device.type == "cuda"
    embeddings = on_gpu.embeddings.cpu()
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (0,))
    assert (reference - attention_weights(attention_scores(embeddings, weights))).abs().max() < 1e-4

    def mean_corr(solution) -> float:
        attention = attention_weights(attention_scores(solution.embeddings.cpu(), weights))
        pictures = [sink_picture(maps[0].numpy()) for maps in attention]
        pairs = zip(pictures, clip, strict=True)
        scores = [picture_metrics(picture, frame[0].numpy())["corr"] for picture, frame in pairs]
        return sum(scores) / len(scores)

    assert mean_corr(on_gpu) > mean_corr(on_cpu) - 0.01


def test_optimize_runs_on_cuda(tmp_path, tiny_checkpoint):
    from tests.media import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    frames = tmp_path / "frames"
    assert_ok(
        run("download.py", "--input", clip, "--frames-dir", frames, "--size", SIZE, "--fps", FPS)
    )
    model = ["--model", tiny_checkpoint, "--frames-dir", frames]
    assert_ok(run("optimize.py", *model, "--device", "cuda", "--verify", "2"))
    metrics = json.loads((frames / "output" / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert metrics["means"]["corr"] > 0.98  # true tone on the GPU: as on the CPU (0.999)


def test_a_deeper_layer_is_reached_on_the_gpu(tiny_deep_checkpoint):
    """The fixed point of residual.py with the blocks on the GPU: transformers on the CPU, on the
    inputs it found, gives layer 3 the queries and keys that were asked for."""
    from badapple.reachable import lift_factored, project_to_ball, reachable_space
    from badapple.residual import LayerInput, reach_layer

    checkpoint = open_checkpoint(str(tiny_deep_checkpoint))
    weights = load_head(checkpoint, (2,), tokens=17, layer=3).to("cuda")
    space = reachable_space(weights)
    generator = torch.Generator().manual_seed(0)
    wanted = project_to_ball(torch.randn(3, 17, space.dims, generator=generator), space.radius)
    reached = reach_layer(LayerInput(checkpoint, 3, "cuda"), wanted.cuda(), space, weights)
    assert bool(reached.converged.all()) and reached.inputs.device.type == "cuda"
    theirs = transformers_attention(
        model_through_layer(checkpoint, 3), reached.inputs.cpu(), (2,), layer=3
    )
    solved = lift_factored(wanted.cuda(), space, weights).inputs_embeds()
    ours = attention_weights(attention_scores(solved, weights)).cpu()
    assert (theirs - ours).abs().max() < 1e-4
