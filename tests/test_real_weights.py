"""The real trained checkpoints of fixtures/real_weights.py: read as transformers reads them."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from badapple.checkpoint import open_checkpoint
from badapple.head import attention_weights, load_head
from fixtures.real_weights import minilm_checkpoint, unpermute_rows
from tests.scripts import assert_ok, run, warning_lines
from tests.test_end_to_end import fresh_copy


@pytest.mark.parametrize("heads, key_heads", [(9, 9), (9, 3)])
def test_unpermute_rows_is_transformers_own_undoing_of_llama_cpp(heads, key_heads):
    rows = torch.randn(key_heads * 64, 576)
    ours = unpermute_rows(rows, key_heads).numpy()
    theirs = LlamaTensorProcessor()._reverse_permute_weights(rows.numpy(), heads, key_heads)
    np.testing.assert_array_equal(ours, theirs)


def test_smollm2_plays_as_transformers_runs_it(smollm2_checkpoint):
    """Our scores of heads 0 and 5 (5 uses key head 1) at layer 0 are transformers' own eager
    attention of the de-quantised weights, loaded by LlamaForCausalLM from our folder."""
    config = json.loads((smollm2_checkpoint / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 576)
    model = LlamaForCausalLM.from_pretrained(smollm2_checkpoint, attn_implementation="eager")
    inputs = torch.randn(1, 12, 576, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = model.model(inputs_embeds=inputs, output_attentions=True).attentions[0]
    weights = load_head(open_checkpoint(str(smollm2_checkpoint)), (0, 5), tokens=12)
    from badapple.head import attention_scores

    ours = attention_weights(attention_scores(inputs, weights))
    torch.testing.assert_close(ours[0], theirs[0, [0, 5]], atol=1e-5, rtol=0)


def test_the_weights_are_the_pinned_trained_ones(smollm2_checkpoint):
    """Layer 0's norm is not an init's (all ones): trained, its gains spread over an order of
    magnitude; and all-MiniLM's hash was checked on the way."""
    state = load_file(smollm2_checkpoint / "model.safetensors")
    gains = state["model.layers.0.input_layernorm.weight"].abs()
    assert gains.max() / gains.min() > 10
    assert (minilm_checkpoint() / "config.json").is_file()


@pytest.mark.slow
def test_real_frames_play_on_the_best_display_of_real_smollm2(
    tmp_path,
    pipeline_run,
    smollm2_checkpoint,
):
    """Trained weights, the frames of the end-to-end clip: the default display (layer 0, whose
    heads span about a nat) says it is weak and names layer 1; --layer best --head best plays
    on layer 1 and its pictures, through transformers, show the frames."""
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", smollm2_checkpoint, "--frames-dir", folder.root, "--device", "cpu"]
    survey = run("optimize.py", *flags, "--survey")
    assert_ok(survey)
    (weak,) = warning_lines(survey)
    assert "weak display" in weak and "try --layer 1 --head" in weak
    assert not folder.embeddings.exists() or not any(folder.embeddings.iterdir())  # no solve
    # ... and a weak display polishes a frame from its predecessor briefly: it shows no scene
    # well, so a long polish gains it little (warm.py)
    weak = fresh_copy(pipeline_run, tmp_path / "weak")
    weak_run = run("optimize.py", *flags[:2], "--frames-dir", weak.root, "--frames", "1:1")
    assert_ok(weak_run)
    assert "(200 from the previous frame)" in weak_run.stdout

    result = run("optimize.py", *flags, "--layer", "best", "--head", "best", "--verify", "3")
    assert_ok(result)
    assert not warning_lines(result)
    assert "(750 from the previous frame)" in result.stdout
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["layer"] == 1
    maes = [record["mae"] for record in metrics["frames"]]
    assert len(maes) == 20 and max(maes) < 0.02 and sum(maes) / len(maes) < 0.005, maes
    atlas = metrics["display_atlas"]
    assert len(atlas["span_nats"]) == 2 and atlas["survey"]
    # through transformers: LlamaModel's attention at layer 1 on the saved inputs is ours
    assert "verify: 3 frames through transformers' LlamaModel, layer 1" in result.stdout


@pytest.mark.slow
def test_real_minilm_plays_its_whole_square(tmp_path, pipeline_run):
    """all-MiniLM-L6-v2 as published: --head best on its layer 0 (a BERT is post-LN: layer 0
    only), the whole square through transformers' BertModel."""
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", minilm_checkpoint(), "--frames-dir", folder.root, "--device", "cpu"]
    result = run("optimize.py", *flags, "--head", "best", "--frames", "1:6", "--verify", "2")
    assert_ok(result)
    metrics = json.loads(folder.metrics.read_text())
    assert metrics["settings"]["layout"] == "full" and metrics["settings"]["layer"] == 0
    assert len(metrics["display_atlas"]["survey"]) == 12
    maes = [record["mae"] for record in metrics["frames"]]
    assert max(maes) < 0.01, maes
