"""The reachable ellipsoid of layer 0's queries and keys, and the lift back to GPT-2 inputs."""

import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.head import load_head
from badapple.reachable import (
    lift_factored,
    project_to_ball,
    queries_keys_from_whitened,
    reachable_space,
    whiten_embeddings,
)
from badapple.verify import one_layer_gpt2


def random_rows(batch: int, tokens: int, dims: int, radius: float) -> torch.Tensor:
    """Whitened rows spread over the ball, some on its surface: [batch, tokens, dims]."""
    rows = torch.randn(batch, tokens, dims, generator=torch.Generator().manual_seed(0))
    rows = rows / rows.norm(dim=-1, keepdim=True) * torch.rand(batch, tokens, 1) * 1.2
    return project_to_ball(rows, radius)


@pytest.mark.parametrize("heads", [(0,), (3,), (1, 6), (5, 0, 2)])
def test_lifted_embeddings_give_the_optimised_queries_and_keys_in_transformers(
    tiny_eight_heads_checkpoint, heads
):
    checkpoint = open_checkpoint(str(tiny_eight_heads_checkpoint))
    weights = load_head(checkpoint, heads, tokens=24)
    space = reachable_space(weights)
    whitened = random_rows(2, 24, space.dims, space.radius)
    embeddings = lift_factored(whitened, space, weights).inputs_embeds()  # [2, 24, d]
    wanted_queries, wanted_keys = queries_keys_from_whitened(whitened, space, len(heads))

    # transformers' own layer 0: ln_1, then c_attn, whose output is [Q | K | V] for all heads
    model = one_layer_gpt2(checkpoint)
    with torch.no_grad():
        hidden = model.h[0].ln_1(embeddings + model.wpe.weight[:24])
        projected = model.h[0].attn.c_attn(hidden)  # [2, 24, 3d]
    d, head_dim = checkpoint.n_embd, weights.head_dim
    for index, head in enumerate(heads):
        columns = slice(head * head_dim, (head + 1) * head_dim)
        queries = projected[..., columns]
        keys = projected[..., d + head * head_dim : d + (head + 1) * head_dim]
        assert (queries - wanted_queries[:, index]).abs().max() < 1e-4
        assert (keys - wanted_keys[:, index]).abs().max() < 1e-4


def test_the_lift_is_exact_and_unit_scale(tiny_eight_heads_checkpoint):
    weights = load_head(open_checkpoint(str(tiny_eight_heads_checkpoint)), (0, 2), tokens=16)
    space = reachable_space(weights)
    whitened = random_rows(3, 16, space.dims, space.radius)
    embeddings = lift_factored(whitened, space, weights).inputs_embeds()
    # x + wpe has variance 1 - eps and zero mean, so ln_1 leaves it as it is (times gamma)
    inputs = embeddings + weights.position
    assert torch.allclose(inputs.mean(-1), torch.zeros(3, 16), atol=1e-5)
    assert torch.allclose(inputs.var(-1, unbiased=False), torch.full((3, 16), 1 - 1e-5), atol=1e-4)
    # and whitening the lifted inputs gives the rows back
    assert torch.allclose(whiten_embeddings(embeddings, space, weights), whitened, atol=1e-4)


def test_every_input_lands_inside_the_ellipsoid_and_its_surface_is_reached(tiny_checkpoint):
    weights = load_head(open_checkpoint(str(tiny_checkpoint)), (1,), tokens=16)
    space = reachable_space(weights)
    for scale in (0.01, 1.0, 100.0, 1e4):  # ‖z‖² -> d as the input grows, never beyond
        embeddings = torch.randn(4, 16, weights.d_model) * scale + weights.position * 50
        norms = whiten_embeddings(embeddings, space, weights).norm(dim=-1)
        assert (norms < 1).all()
    # rows on the surface of the ball (the most extreme queries and keys) are real inputs
    surface = project_to_ball(torch.randn(2, 16, space.dims) * 10, space.radius)
    lifted = lift_factored(surface, space, weights).inputs_embeds()
    assert torch.allclose(whiten_embeddings(lifted, space, weights), surface, atol=1e-4)


def test_projection_keeps_short_rows_and_shortens_long_ones():
    rows = torch.tensor([[0.3, 0.4], [3.0, 4.0]])
    projected = project_to_ball(rows, 0.5)
    assert torch.equal(projected[0], rows[0])
    assert torch.allclose(projected[1], torch.tensor([0.3, 0.4]))


def test_too_many_heads_for_the_model_is_a_clear_error(tiny_checkpoint):
    from badapple.errors import UserError

    # 4 heads of 16: 128 query/key columns from a 64-wide model cannot be independent
    weights = load_head(open_checkpoint(str(tiny_checkpoint)), (0, 1, 2, 3), tokens=8)
    with pytest.raises(UserError, match="not independent"):
        reachable_space(weights)
