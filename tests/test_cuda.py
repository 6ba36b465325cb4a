"""The solvers and the pipeline on a CUDA GPU; skipped where torch sees none."""

import json
from dataclasses import replace

import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.head import attention_scores, causal_attention, load_head
from badapple.solvers import METHOD_DEFAULTS, solve_adam, solve_reduced
from badapple.targets import DEFAULT_CONTRAST_NATS, sink_target
from badapple.verify import one_layer_gpt2, transformers_attention
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


@pytest.mark.parametrize("solve", [solve_reduced, solve_adam])
def test_solutions_found_on_the_gpu_are_gpt2_inputs(tiny_checkpoint, solve):
    checkpoint = open_checkpoint(str(tiny_checkpoint))
    weights = load_head(checkpoint, (0,), tokens=33)  # the sink and 32 rows
    settings = METHOD_DEFAULTS["reduced"] if solve is solve_reduced else METHOD_DEFAULTS["adam"]
    if solve is solve_adam:
        settings = replace(settings, steps=200)  # the original's 1500 are not needed here
    pictures = sink_target(block_frames(3, 32), DEFAULT_CONTRAST_NATS)  # [3, 1, 33, 33]
    on_gpu = solve(weights.to("cuda"), pictures.cuda(), [1, 2, 3], settings, lambda loss: None)
    embeddings = on_gpu.embeddings.cpu()
    assert torch.isfinite(embeddings).all()
    reference = transformers_attention(one_layer_gpt2(checkpoint), embeddings, (0,))
    ours = causal_attention(attention_scores(embeddings, weights))
    assert (reference - ours).abs().max() < 1e-4
    # the same frames solved on the CPU reach a comparable loss
    on_cpu = solve(weights, pictures, [1, 2, 3], settings, lambda loss: None)
    assert on_gpu.loss.cpu().mean() < 1.5 * on_cpu.loss.mean() + 1e-3


def test_optimize_runs_on_cuda(tmp_path, tiny_checkpoint):
    from tests.media import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    frames = tmp_path / "frames"
    assert_ok(
        run("download.py", "--input", clip, "--frames-dir", frames, "--size", SIZE, "--fps", FPS)
    )
    assert_ok(
        run(
            "optimize.py",
            "--model",
            tiny_checkpoint,
            "--frames-dir",
            frames,
            "--device",
            "cuda",
            "--verify",
            "2",
        )
    )
    metrics = json.loads((frames / "output" / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert metrics["means"]["corr"] > 0.98  # true tone on the GPU: as on the CPU (0.999)
