"""Deeper layers: the residual stream entering layer L, and inputs that put the solved rows there.

On a four-layer random GPT-2 whose blocks' output projections are scaled up ten times, so
every block moves the residual stream a lot; everything is checked through transformers' own
GPT2Model, on the inputs as they are saved.
"""

import pytest
import torch

import badapple.residual as residual_module
from badapple.checkpoint import open_checkpoint, read_tensors
from badapple.head import attention_scores, attention_weights, load_head
from badapple.layout import HEADS_PER_CHANNEL
from badapple.look import Look
from badapple.reachable import (
    lift_factored,
    project_to_ball,
    reachable_space,
    whiten_embeddings,
)
from badapple.residual import CONVERGED_ERROR, LayerInput, reach_layer, transformers_model
from badapple.solvers import METHOD_DEFAULTS, solve_frames
from badapple.verify import model_through_layer, transformers_attention
from tests.conftest import TINY_DEEP

SIZE = 16  # frames of 16 x 16: 17 tokens with the sink
ATTENTION_TOLERANCE = 1e-4  # what --verify allows


def checkpoint_position(checkpoint, tokens: int) -> torch.Tensor:
    return read_tensors(checkpoint, ["wpe.weight"])["wpe.weight"][:tokens]


def disc_frames(count: int, size: int) -> torch.Tensor:
    """A black disc moving over white, [count, 1, size, size] in [0, 1]."""
    rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frames = []
    for index in range(count):
        centre = size / 3 + index
        inside = (rows - centre) ** 2 + (columns - size / 3) ** 2 < (size / 4) ** 2
        frames.append((~inside).float())
    return torch.stack(frames)[:, None]


@pytest.mark.parametrize("layer", [1, 3])
def test_layer_input_is_the_stream_transformers_feeds_the_layer(tiny_deep_checkpoint, layer):
    checkpoint = open_checkpoint(str(tiny_deep_checkpoint))
    inputs = torch.randn(11, 12, TINY_DEEP["n_embd"])  # more than one forward's frames on a CPU
    whole = transformers_model(checkpoint, TINY_DEEP["n_layer"], attention="eager")
    with torch.no_grad():
        expected = whole(inputs_embeds=inputs, output_hidden_states=True).hidden_states[layer]
    assert torch.allclose(LayerInput(checkpoint, layer, "cpu")(inputs), expected, atol=1e-5)


@pytest.mark.parametrize(
    "layer, heads",
    [(1, (0,)), (2, (3, 9)), (3, (15,)), (3, (1, 4, 7))],
)
def test_reached_inputs_reproduce_random_rows_to_float_precision(
    tiny_deep_checkpoint, layer, heads
):
    checkpoint = open_checkpoint(str(tiny_deep_checkpoint))
    weights = load_head(checkpoint, heads, tokens=20, layer=layer)
    space = reachable_space(weights)
    generator = torch.Generator().manual_seed(layer)
    wanted = project_to_ball(
        torch.randn(3, 20, space.dims, generator=generator), space.radius
    )  # rows anywhere in the ball, its surface included
    reached = reach_layer(LayerInput(checkpoint, layer, "cpu"), wanted, space, weights)

    assert bool(reached.converged.all()) and float(reached.error.max()) <= CONVERGED_ERROR
    # The blocks' updates matter: the inputs a·E - wpe, without them, miss by far more.
    layer_input = LayerInput(checkpoint, layer, "cpu")
    aimed = torch.cat(
        [
            lift_factored(wanted[[frame]], space, weights, float(scale)).inputs_embeds()
            for frame, scale in enumerate(reached.scale)
        ]
    )  # a·E [3, 20, d]
    naive = layer_input(aimed - checkpoint_position(checkpoint, 20))
    naive_error = ((naive - aimed).norm(dim=-1) / aimed.norm(dim=-1)).amax(dim=-1)
    assert float(naive_error.min()) > 10 * CONVERGED_ERROR
    model = model_through_layer(checkpoint, layer)
    theirs = transformers_attention(model, reached.inputs, heads, layer)
    with torch.no_grad():
        seen = whiten_embeddings(reached.rows, space, weights)  # what the layer sees, whitened
        solved_rows = lift_factored(wanted, space, weights).inputs_embeds()
        solved = attention_weights(attention_scores(solved_rows, weights))
    assert (seen - wanted).abs().max() < 1e-4
    assert (theirs - solved).abs().max() < ATTENTION_TOLERANCE


@pytest.mark.parametrize(
    "layer, channels, layout, heads",
    [
        (1, 1, "half", (2,)),
        (3, 1, "half", (11,)),
        (2, 1, "full", (0, 5)),
        (3, 3, "half", (1, 6, 12)),
        (2, 3, "full", (0, 1, 2, 3, 4, 5)),
    ],
)
def test_a_solved_frame_plays_on_the_deeper_layer_through_transformers(
    tiny_deep_checkpoint, layer, channels, layout, heads
):
    """The reduced solver's maps of real frames (half, full frame, colour) on layer L, and
    transformers' attention at layer L on the inputs that reach them: the same to 1e-4."""
    assert len(heads) == channels * HEADS_PER_CHANNEL[layout]
    checkpoint = open_checkpoint(str(tiny_deep_checkpoint))
    weights = load_head(checkpoint, heads, tokens=SIZE + 1, layer=layer)
    pictures = disc_frames(2, SIZE).expand(-1, channels, -1, -1).clone()  # [2, C, T, T]
    if channels == 3:
        pictures[:, 1] = 1 - pictures[:, 1]  # channels that differ
    look = Look(layout, "sink", 6.0, 0.0, None if channels == 3 else "gray", channels)
    settings = METHOD_DEFAULTS["reduced"]
    solution = solve_frames(
        "reduced", weights, look.aimed(pictures), [1, 2], settings, lambda _: None, {}
    )
    space = reachable_space(weights)
    whitened = whiten_embeddings(solution.embeddings, space, weights)
    reached = reach_layer(LayerInput(checkpoint, layer, "cpu"), whitened, space, weights)

    assert bool(reached.converged.all())
    theirs = transformers_attention(
        model_through_layer(checkpoint, layer), reached.inputs, heads, layer
    )
    with torch.no_grad():
        solved = attention_weights(attention_scores(solution.embeddings, weights))
    assert (theirs - solved).abs().max() < ATTENTION_TOLERANCE
    mae = [record["mae"] for record in look.judge(weights, pictures, reached.rows)]
    assert max(mae) < 0.05  # the frames are played, not just some map


def test_a_frame_that_does_not_converge_says_so(tiny_deep_checkpoint, monkeypatch):
    """At unit scale the blocks' updates swamp the rows and the fixed point does not contract:
    the frame is reported as not converged, with the error its inputs really have."""
    monkeypatch.setattr(residual_module, "SCALES", (1.0,))
    checkpoint = open_checkpoint(str(tiny_deep_checkpoint))
    weights = load_head(checkpoint, (0,), tokens=10, layer=3)
    space = reachable_space(weights)
    wanted = project_to_ball(torch.randn(2, 10, space.dims), space.radius)
    layer_input = LayerInput(checkpoint, 3, "cpu")
    reached = reach_layer(layer_input, wanted, space, weights)

    assert not bool(reached.converged.any())
    aimed = lift_factored(wanted, space, weights, 1.0).inputs_embeds()
    really = layer_input(reached.inputs)
    error = ((really - aimed).norm(dim=-1) / aimed.norm(dim=-1)).amax(dim=-1)
    assert torch.allclose(error, reached.error, rtol=1e-3)
    assert torch.equal(really, reached.rows)
