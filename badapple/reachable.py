"""The queries and keys a layer can reach, in whitened coordinates, and the lift back to inputs.

Row i of a LayerNorm's output is γ⊙zᵢ + β, where zᵢ = (xᵢ - mean) / sqrt(var + ε) has zero mean
and ‖zᵢ‖² = d·var/(var + ε) < d. The heads' queries and keys of that row (before any rotary
positions, which rotate them after: head.py) are then

    qkᵢ = zᵢ A + c,   A = diag(γ) [Wq | Wk]  [d, (H+G)·hd],   c = β [Wq | Wk] + [bq | bk]

and since zᵢ is centred only the row-centred Ac = A - mean_rows(A) matters. Under an RMSNorm
(Llama) zᵢ = xᵢ / sqrt(mean(xᵢ²) + ε) is not centred, β = 0, and Ac = A: the same with nothing
to centre. With AcᵀAc = L Lᵀ (Cholesky), the reachable qkᵢ are exactly c + √d·uᵢ Lᵀ for uᵢ
in the open unit ball: a solid ellipsoid. Solvers work on u (whitened: every direction equally
easy), and `lift_factored` turns u back into real inputs:

    zᵢ = √d·uᵢ L⁻¹ Acᵀ   the minimum-norm z (centred, under a LayerNorm) with z Ac = √d·uᵢ Lᵀ;
                         ‖zᵢ‖² = d‖uᵢ‖²
    ẑᵢ = zᵢ + sᵢ n       n: a unit vector ⟂ Ac's columns (and ⟂ 1 under a LayerNorm), sᵢ
                         chosen so that ‖ẑᵢ‖² = d(1 - ε): var(ẑᵢ), or mean(ẑᵢ²), is 1 - ε
    xᵢ = ẑᵢ - Pᵢ         the norm then takes xᵢ + Pᵢ = ẑᵢ to ẑᵢ / sqrt(1 - ε + ε) = ẑᵢ

(P the position table, or 0), so the lifted embeddings reproduce the queries and keys exactly
(to float precision), with inputs of unit scale rather than the tiny ones a plain rescaling
would need.
"""

import math
from dataclasses import dataclass

import torch

from badapple.errors import UserError
from badapple.head import HeadWeights, normalised_input, split_heads

# Keep ‖u‖² below 1 - ε (with this margin) so the null-space term of the lift stays real.
BALL_MARGIN = 1e-4


@dataclass(frozen=True)
class ReachableSpace:
    """Whitened coordinates of a layer's queries and keys, for the heads of a `HeadWeights`."""

    offset: torch.Tensor  # [D] c: the queries and keys of a row whose z is 0; D = (H+G)·hd
    basis: torch.Tensor  # [D, D] √d·Lᵀ: qk = offset + u @ basis
    lift: torch.Tensor  # [D, d] √d·L⁻¹Acᵀ: z = u @ lift
    null_direction: torch.Tensor  # [d] unit, orthogonal to Ac's columns (centred: LayerNorm)
    radius: float  # largest ‖u‖ a solver may use

    @property
    def dims(self) -> int:
        return self.basis.shape[0]


def reachable_space(weights: HeadWeights) -> ReachableSpace:
    """The ellipsoid of `weights`' queries and keys: computed in float64 on the CPU (an Apple GPU
    has no float64), returned in float32 on the weights' device."""
    d_model, device = weights.d_model, weights.position.device

    def on_cpu(tensor: torch.Tensor) -> torch.Tensor:  # moved first, then widened there
        return tensor.cpu().double()

    weight = on_cpu(weights.query_key_weight)  # [d, (H+G)·hd]
    scaled = on_cpu(weights.ln_weight)[:, None] * weight  # A = diag(γ) W
    layer_norm = weights.norm == "layer"
    # Ac: under a LayerNorm z is centred, so only this acts; an RMSNorm's z is any vector
    centred = scaled - scaled.mean(dim=0, keepdim=True) if layer_norm else scaled
    offset = on_cpu(weights.ln_bias) @ weight + on_cpu(weights.query_key_bias)
    gram = centred.T @ centred  # AcᵀAc [(H+G)·hd, (H+G)·hd]
    cholesky, info = torch.linalg.cholesky_ex(gram)
    if info != 0 or centred.shape[1] >= d_model - layer_norm:
        raise UserError(
            f"the queries and keys of heads {weights.heads} are not independent in this "
            f"checkpoint (d={d_model}); pick fewer heads or a larger model"
        )
    root_d = math.sqrt(d_model)
    # L⁻¹ Acᵀ by a triangular solve, not an explicit inverse.
    lift = root_d * torch.linalg.solve_triangular(cholesky, centred.T, upper=False)

    # A direction no head sees: project a fixed vector off Ac's columns, and off 1 under a
    # LayerNorm (the rows of `lift` are orthogonal with norm √d, so this projection is exact).
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(d_model, generator=generator, dtype=torch.float64)
    if layer_norm:
        direction -= direction.mean()
    direction -= (lift @ direction) @ lift / d_model
    direction /= direction.norm()
    return ReachableSpace(
        offset=offset.float().to(device),
        basis=(root_d * cholesky.T).float().to(device),
        lift=lift.float().to(device),
        null_direction=direction.float().to(device),
        radius=math.sqrt(1 - weights.ln_eps) * (1 - BALL_MARGIN),
    )


def queries_keys_from_whitened(
    whitened: torch.Tensor, space: ReachableSpace, weights: HeadWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys of whitened rows, as the forward has them (each head its key
    head's keys, rotated by position): [B, T, D] -> 2 x [B, H, T, hd]."""
    projected = whitened @ space.basis + space.offset  # [B, T, D], laid out as [Q | K]
    return split_heads(projected, weights)


def project_to_ball(whitened: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale every row longer than `radius` back onto the sphere: [..., D] -> same."""
    norms = whitened.norm(dim=-1, keepdim=True)
    return whitened * (radius / norms.clamp(min=radius))


@dataclass(frozen=True)
class Factored:
    """Embeddings in a compact exact form: inputs_embeds = coefficients @ basis + offset."""

    coefficients: torch.Tensor  # [B, T, k]
    basis: torch.Tensor  # [k, d]
    offset: torch.Tensor  # [T, d]

    def inputs_embeds(self) -> torch.Tensor:
        """[B, T, d] float32: the one formula the solver and every reader use, so what a run
        renders is, bit for bit, what a later run reads back."""
        return self.coefficients.float() @ self.basis.float() + self.offset.float()


def lift_factored(
    whitened: torch.Tensor, space: ReachableSpace, weights: HeadWeights, scale: float = 1.0
) -> Factored:
    """Inputs whose layer's queries and keys are those of `whitened`, factored.

    [B, T, D] -> coefficients [B, T, D + 1], basis [D + 1, d], offset [T, d]; D = (H+G)·hd.
    Rows must lie inside the ball of `space.radius`. Line by line the lift of the module's
    docstring, with each row's z and null-space term kept as coefficients of fixed vectors:

        zᵢ = uᵢ @ lift                       ‖zᵢ‖² = d‖uᵢ‖² (lift's rows: orthogonal, norm √d)
        ẑᵢ = zᵢ + sᵢ n,  sᵢ = √(d(1-ε/a²) - d‖uᵢ‖²)
        xᵢ = a·ẑᵢ - wpeᵢ = a·[uᵢ, sᵢ] @ [lift; n] - wpeᵢ

    `scale` a (1: layer 0's inputs of unit scale) gives rows a times as large that the LayerNorm
    still takes to ẑᵢ: var(a·ẑᵢ) = a² - ε, and a·ẑᵢ / sqrt(a² - ε + ε) = ẑᵢ. A deeper layer's
    rows are lifted large (residual.py).
    """
    d_model, tokens = weights.d_model, whitened.shape[1]
    # s in float64 on the CPU (an Apple GPU has none): on the ball's surface d(1-ε) - d‖u‖²
    # cancels to 2e-4 of d, and float32's rounding of ‖u‖² would move s by 5e-4 of itself.
    squared_norm = whitened.cpu().double().square().sum(dim=-1, keepdim=True)  # ‖u‖² [B, T, 1]
    room = d_model * (1 - weights.ln_eps / scale**2) - d_model * squared_norm
    slack = room.clamp(min=0).sqrt()  # s
    coefficients = torch.cat([whitened, slack.float().to(whitened.device)], dim=-1)
    return Factored(
        coefficients=coefficients * scale if scale != 1 else coefficients,
        basis=torch.cat([space.lift, space.null_direction[None]]),
        offset=-weights.position[:tokens],
    )


def whiten_embeddings(
    embeddings: torch.Tensor, space: ReachableSpace, weights: HeadWeights
) -> torch.Tensor:
    """The whitened coordinates of existing inputs_embeds (e.g. a saved frame's), the inverse of
    `lift_factored` on what the heads see: [B, T, d] -> [B, T, (H+G)·hd]."""
    hidden = normalised_input(embeddings, weights)  # [B, T, d]
    projected = hidden @ weights.query_key_weight + weights.query_key_bias  # qk [B, T, D]
    # u @ basis = qk - offset, with basis upper triangular
    return torch.linalg.solve_triangular(
        space.basis, projected - space.offset, upper=True, left=False
    )
