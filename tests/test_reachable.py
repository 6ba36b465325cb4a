"""The reachable ellipsoid of layer 0's queries and keys, and the lift back to GPT-2 inputs."""

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from badapple.checkpoint import open_checkpoint
from badapple.head import load_head
from badapple.reachable import (
    lift_factored,
    project_to_ball,
    queries_keys_from_whitened,
    reachable_space,
    whiten_embeddings,
)
from badapple.solvers import solve_reduced, solver_settings
from badapple.verify import model_through_layer


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
    wanted_queries, wanted_keys = queries_keys_from_whitened(whitened, space, weights)

    # transformers' own layer 0: ln_1, then c_attn, whose output is [Q | K | V] for all heads
    model = model_through_layer(checkpoint)
    with torch.no_grad():
        hidden = model.h[0].ln_1(embeddings + model.wpe.weight[:24])
        projected = model.h[0].attn.c_attn(hidden)  # [2, 24, 3d]
    d, head_dim = checkpoint.shape.d_model, weights.head_dim
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


def test_the_null_space_term_is_exact_on_the_balls_surface(tiny_eight_heads_checkpoint):
    # On the surface d(1-ε) - d‖u‖² cancels to 2e-4 of d: ‖u‖² summed in float32 would move
    # s by ~5e-4 of itself. s is computed in float64 and rounded once.
    weights = load_head(open_checkpoint(str(tiny_eight_heads_checkpoint)), (1, 4), tokens=16)
    space = reachable_space(weights)
    rows = torch.randn(4, 16, space.dims, generator=torch.Generator().manual_seed(2))
    surface = project_to_ball(rows * 10, space.radius)
    slack = lift_factored(surface, space, weights).coefficients[..., -1]
    squared_norm = surface.double().square().sum(dim=-1)
    exact = (weights.d_model * (1 - weights.ln_eps - squared_norm)).sqrt()
    assert ((slack.double() - exact) / exact).abs().max() < 1e-6


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


SIMULATED = torch.device("mps")  # an Apple GPU: no float64 there
MIXING_ALLOWED = ("__getitem__", "__setitem__", "index_select")  # CPU indices work on a GPU


class SimulatedDevice(TorchFunctionMode):
    """An Apple GPU simulated on the CPU, so that a machine without one can tell what would run
    there. A tensor created on SIMULATED or moved there is a CPU tensor marked as its: it
    reports SIMULATED as its device, what is computed from it is SIMULATED's too, and it leaves
    only by a copy (`.cpu()`, `.to("cpu")`). As on a real GPU, an op mixing it with a CPU tensor
    (other than a 0-dim one, or an index) raises, and so does its `.numpy()`. `produced` records
    the op, dtype and device of every tensor made."""

    def __init__(self):
        super().__init__()
        self.produced: list[tuple[str, torch.dtype, str]] = []  # (op, dtype, device type)

    @staticmethod
    def on_device(tensor) -> bool:
        return isinstance(tensor, torch.Tensor) and getattr(tensor, "_simulated", False)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if getattr(func, "__self__", None) is torch.Tensor.device:  # tensor.device
            return SIMULATED if self.on_device(args[0]) else func(*args)
        name = getattr(func, "__name__", str(func))
        if name == "numpy" and self.on_device(args[0]):
            raise TypeError(f"can't convert a {SIMULATED} tensor to numpy; copy it to the CPU")
        # where the op is asked to put its result: Tensor.cpu, Tensor.to's device, device=
        if func is torch.Tensor.cpu:
            target = torch.device("cpu")
        else:
            asked = [kwargs.get("device")] + (list(args[1:]) if func is torch.Tensor.to else [])
            devices = [torch.device(a) for a in asked if isinstance(a, str | torch.device)]
            target = devices[0] if devices else None
        if target == SIMULATED:  # underneath, the CPU
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            if func is torch.Tensor.to:
                args = tuple("cpu" if isinstance(a, str | torch.device) else a for a in args)
        if target is None:  # an op: its result is where its inputs are
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            lands = any(self.on_device(t) for t in inputs)
            mixed = [t for t in inputs if not self.on_device(t) and t.dim() > 0]
            if lands and mixed and name not in MIXING_ALLOWED:
                raise RuntimeError(f"{name} mixes {SIMULATED} tensors with CPU ones")
        else:
            lands = target == SIMULATED
        result = func(*args, **kwargs)
        if target is not None and args and result is args[0] and self.on_device(result) != lands:
            result = result.clone()  # a move is a copy: the original stays where it was
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor):
                tensor._simulated = lands
                device = SIMULATED.type if lands else tensor.device.type
                self.produced.append((name, tensor.dtype, device))
        return result


def test_nothing_in_float64_lands_on_the_solve_device(tiny_eight_heads_checkpoint):
    """An Apple GPU has no float64: the float64 parts of the reduced solver run on the CPU, and
    what comes back to the device (the ellipsoid, the lift, the solution) is float32 there."""
    on_cpu = load_head(open_checkpoint(str(tiny_eight_heads_checkpoint)), (0, 2), tokens=12)
    expected = reachable_space(on_cpu)
    whitened = random_rows(2, 12, expected.dims, expected.radius)
    expected_lift = lift_factored(whitened, expected, on_cpu)
    targets = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    settings = solver_settings("reduced", steps=8)

    with SimulatedDevice() as device:
        weights = on_cpu.to(SIMULATED)
        assert weights.position.device == SIMULATED
        space = reachable_space(weights)
        lifted = lift_factored(whitened.to(SIMULATED), space, weights)
        cold = solve_reduced(weights, targets.to(SIMULATED), [1, 2], settings, lambda _: None)
        warm = solve_reduced(
            weights, targets.to(SIMULATED), [1, 2], settings, lambda _: None, cold.embeddings
        )
        results = [space.offset, space.basis, space.lift, space.null_direction]
        results += [lifted.coefficients, cold.embeddings, warm.embeddings, warm.loss]
        assert all(t.device == SIMULATED and t.dtype == torch.float32 for t in results)
        assert cold.factored.coefficients.device == SIMULATED
        got_lift = lifted.coefficients.cpu()

    made = {(dtype, where) for _, dtype, where in device.produced}
    wrong = (torch.float64, SIMULATED.type)
    float64_there = {op for op, dtype, where in device.produced if (dtype, where) == wrong}
    assert not float64_there, f"float64 on {SIMULATED}: {sorted(float64_there)}"
    # the record saw the work: the ellipsoid's and the lift's float64 on the CPU, the solver's
    # float32 on the device
    assert {(torch.float64, "cpu"), (torch.float32, SIMULATED.type)} <= made
    # and the device gives the CPU's answer
    assert torch.equal(got_lift, expected_lift.coefficients)
    assert torch.isfinite(warm.loss.cpu()).all()


# --- a norm over all heads (OLMo 2): a subspace of inputs ----------------------------------


@pytest.fixture(scope="module")
def olmo2_checkpoint(tmp_path_factory):
    from tests.conftest import save_family_checkpoint

    return save_family_checkpoint(tmp_path_factory.mktemp("olmo2"), "olmo2")


def test_a_norm_over_all_heads_sees_the_space_s_energies_and_exact_lifts(olmo2_checkpoint):
    """Heads 1 and 6 (key heads 0 and 3): the lifted inputs' mean squares over every head's
    queries and keys are u E uᵀ and ‖u‖² - u E uᵀ, their queries and keys are the solver's,
    and whitening them back (at any scale: the norm sees a row's direction) gives u."""
    from badapple.head import joint_mean_squares, normalised_input, queries_keys
    from badapple.reachable import project_to_sphere, whitened_mean_squares

    weights = load_head(open_checkpoint(str(olmo2_checkpoint)), (1, 6), tokens=12)
    space = reachable_space(weights)
    generator = torch.Generator().manual_seed(0)
    whitened = project_to_sphere(torch.randn(2, 12, space.dims, generator=generator))
    inputs = lift_factored(whitened, space, weights).inputs_embeds()
    for ours, solvers in zip(
        joint_mean_squares(normalised_input(inputs, weights), weights),
        whitened_mean_squares(whitened, space),
        strict=True,
    ):
        torch.testing.assert_close(ours, solvers, rtol=1e-4, atol=1e-6)
    for ours, solvers in zip(
        queries_keys(normalised_input(inputs, weights), weights),
        queries_keys_from_whitened(whitened, space, weights),
        strict=True,
    ):
        torch.testing.assert_close(ours, solvers, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(whiten_embeddings(inputs * 7, space, weights), whitened)


def test_a_norm_over_all_heads_reaches_a_query_of_the_whole_energy(olmo2_checkpoint):
    """The subspace holds the inputs that put a row's every query into one played head (its
    query is then √(heads·hd) long before the norm's weight, all the row has) and ones whose
    played query is 0 but for the others' energy: both ends of what the head can show."""
    from badapple.head import joint_mean_squares

    checkpoint = open_checkpoint(str(olmo2_checkpoint))
    weights = load_head(checkpoint, (1,), tokens=4)
    space = reachable_space(weights)
    every_query = weights.every_query_weight  # [d, heads·hd]
    hd = weights.head_dim
    # the least input whose queries are all in head 1's first column
    wanted = torch.zeros(1, every_query.shape[1])
    wanted[0, hd] = 1.0
    alone = wanted @ torch.linalg.pinv(every_query)  # [1, d]
    inside = lift_factored(whiten_embeddings(alone[None], space, weights), space, weights)
    inside = inside.inputs_embeds()[0]  # what the subspace makes of it
    assert torch.nn.functional.cosine_similarity(inside, alone).item() > 0.9999
    played = inside @ weights.query_key_weight[:, :hd]  # head 1's query before the norm
    whole = joint_mean_squares(inside, weights)[0] * every_query.shape[1]  # Σ over every query
    assert (played.square().sum() / whole).item() == pytest.approx(1.0, abs=1e-4)
    # and rows with energy in the other heads only: u the played projections do not see
    assert int(torch.linalg.matrix_rank(space.basis)) < space.dims
