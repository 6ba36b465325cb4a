"""Each supported family, on a tiny random checkpoint written by transformers: our forward of
the played layer equals transformers' own (eager, output_attentions) to 1e-5, sink included;
the lift is exact; and --layer reaches a deeper layer as on GPT-2."""

from pathlib import Path

import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.errors import UserError
from badapple.head import attention_scores, causal_attention, load_head
from badapple.reachable import lift_factored, project_to_ball, reachable_space
from badapple.residual import LayerInput, reach_layer
from badapple.verify import model_through_layer, transformers_attention
from tests.conftest import FAMILY_CONFIGS, save_family_checkpoint

TOLERANCE = 1e-5
TOKENS = 20


@pytest.fixture(scope="module", params=sorted(FAMILY_CONFIGS))
def family_checkpoint(request, tmp_path_factory) -> Path:
    return save_family_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("heads", [(0,), (1, 3), (5, 4, 7)])  # (5, 4): one key head, shared
def test_our_scores_are_transformers(family_checkpoint, heads):
    checkpoint = open_checkpoint(str(family_checkpoint))
    weights = load_head(checkpoint, heads, tokens=TOKENS)
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, heads)
    with torch.no_grad():
        ours = causal_attention(attention_scores(embeddings, weights))
    assert (ours - reference).abs().max() < TOLERANCE


def test_lifted_rows_reproduce_the_solved_map(family_checkpoint):
    checkpoint = open_checkpoint(str(family_checkpoint))
    weights = load_head(checkpoint, (2, 3, 6), tokens=TOKENS)
    space = reachable_space(weights)
    whitened = project_to_ball(torch.randn(2, TOKENS, space.dims), space.radius)
    embeddings = lift_factored(whitened, space, weights).inputs_embeds()
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (2, 3, 6))
    with torch.no_grad():
        solved = causal_attention(attention_scores(embeddings, weights))
    assert (solved - reference).abs().max() < TOLERANCE


def test_a_deeper_layer_is_reached_exactly(family_checkpoint):
    checkpoint = open_checkpoint(str(family_checkpoint))
    weights = load_head(checkpoint, (1, 6), tokens=TOKENS, layer=1)
    space = reachable_space(weights)
    whitened = project_to_ball(torch.randn(2, TOKENS, space.dims), space.radius)
    reached = reach_layer(LayerInput(checkpoint, 1, "cpu"), whitened, space, weights)
    assert bool(reached.converged.all())
    reference = transformers_attention(
        model_through_layer(checkpoint, 1), reached.inputs, (1, 6), layer=1
    )
    with torch.no_grad():
        solved = lift_factored(whitened, space, weights).inputs_embeds()
        ours = causal_attention(attention_scores(solved, weights))
    assert (ours - reference).abs().max() < 1e-4


def test_an_unsupported_family_gets_one_line(tmp_path):
    from transformers import T5Config, T5Model

    T5Model(T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=8)).save_pretrained(
        tmp_path
    )
    with pytest.raises(UserError, match="t5 checkpoint, which is not supported; pass one of"):
        open_checkpoint(str(tmp_path))
