"""The queries and keys a layer can reach, in whitened coordinates, and the lift back to inputs.

Row i of a LayerNorm's output is γ⊙zᵢ + β, where zᵢ = (xᵢ - mean) / sqrt(var + ε) has zero mean
and ‖zᵢ‖² = d·var/(var + ε) < d. The heads' queries and keys of that row (before any rotary
positions, which rotate them after: head.py) are then

    qkᵢ = zᵢ A + c,   A = diag(γ) [Wq | Wk]  [d, (H+G)·hd],   c = β [Wq | Wk] + [bq | bk]

and since zᵢ is centred only the row-centred Ac = A - mean_rows(A) matters. Under an RMSNorm
(Llama) zᵢ = xᵢ / sqrt(mean(xᵢ²) + ε) is not centred, β = 0, and Ac = A: the same with nothing
to centre. With AcᵀAc = L Lᵀ (Cholesky), the reachable qkᵢ are exactly c + √d·uᵢ Lᵀ for uᵢ
in the open unit ball: a solid ellipsoid. Solvers work on u (whitened: every direction equally
easy; under a norm after each head's projection, on the projections themselves, scaled, since
the norm sees only their directions: `_direction_coordinates`), and `lift_factored` turns u
back into real inputs:

    zᵢ = √d·uᵢ L⁻¹ Acᵀ   the minimum-norm z (centred, under a LayerNorm) with z Ac = √d·uᵢ Lᵀ;
                         ‖zᵢ‖² = d‖uᵢ‖²
    ẑᵢ = zᵢ + sᵢ n       n: a unit vector ⟂ Ac's columns (and ⟂ 1 under a LayerNorm), sᵢ
                         chosen so that ‖ẑᵢ‖² = d(1 - ε): var(ẑᵢ), or mean(ẑᵢ²), is 1 - ε
    xᵢ = ẑᵢ - Pᵢ         the norm then takes xᵢ + Pᵢ = ẑᵢ to ẑᵢ / sqrt(1 - ε + ε) = ẑᵢ

(P the position table, or 0), so the lifted embeddings reproduce the queries and keys exactly
(to float precision), with inputs of unit scale rather than the tiny ones a plain rescaling
would need.

BLOOM normalises its inputs twice: layer 0 sees LN(yᵢ) with yᵢ = LN_e(xᵢ) = γₑ⊙zₑᵢ + βₑ (zₑᵢ
centred, ‖zₑᵢ‖² < d). The heads still see only ẑᵢ = LN's z of yᵢ, which depends on yᵢ's centred
part alone and on nothing of its scale but through ε: ẑᵢ is the z of every a·ẑᵢ + t·1 with
var(a·ẑᵢ) = a² - ε (`lift_factored`'s scale a > 0, any t). So a row is reached when some a gives

    zₑᵢ = M(a·ẑᵢ - βₑ),   M v = Γv - mean(Γv)/mean(Γ1)·Γ1,  Γ = diag(1/γₑ)

(the centred zₑ with γₑ⊙zₑ + βₑ = a·ẑᵢ + t·1: M takes out t) with ‖zₑᵢ‖² = d(1 - εₑ), and then
xᵢ = zₑᵢ - Pᵢ exactly (LN_e takes it to γₑ⊙zₑᵢ + βₑ). As a grows from the least it may be
(ẑ = z, no null-space term), ‖zₑ‖² grows with it; a bisection finds each row's a
(`_input_norm_scales`). Where ‖zₑ‖² is already over d(1 - εₑ) at the least a, no input reaches
the row: the set reachable through both norms is that ellipsoid less the rows whose least
a·ẑᵢ the first norm cannot give (its γₑ too small, or βₑ too large, in their directions). Under
random init (γₑ ≈ 1, βₑ ≈ 0) and a = 1 this is the plain lift, and nothing is lost; a row that
cannot be reached is an error (`UserError`), never a silent miss.

OLMo 2 has no norm before its attention, and normalises the projections instead, over every
head at once: a row x gives head h the query q_h = (x Wq)_h / sqrt(mean((x Wq)²) + ε) ⊙ w_h,
its key likewise over every key head. Its scores then depend on x's direction only (ε aside),
but what one head reaches depends on every other head's projection: a query can be all of a
row's query energy (|q_h| up to √(heads·hd)) only where the other heads' are 0, and the same x
fixes the key. No ellipsoid describes that; we play a subspace of inputs that reaches
both ends, where the whole energy is in the played head's query or key, and all between:

    x = u @ lift,   lift [D, d] rows: the least inputs that put a query (key) into one played
                    head alone (rows of Wq's, Wk's pseudo-inverse), and a few that add energy
                    to the other heads alone (`MASS_DIRECTIONS`)
    mean((x Wq)²) = u E uᵀ,  mean((x Wk)²) = ‖u‖² - u E uᵀ

with the basis whitened against the sum of the two energies (so that they add up to ‖u‖²),
then turned so that its axes are the directions that move the played queries and keys most,
each weighted by the norm's weight (`_weighted_axes`): E, the query energy, is a symmetric
[D, D] form with eigenvalues in [0, 1]. The solver keeps u on the unit sphere (the scores see
only its direction), its queries and keys are u @ basis normalised by those two energies, and
the lift is u @ lift itself: exact, no null-space term, at any scale.
"""

import math
from dataclasses import dataclass

import torch

from badapple.errors import UserError
from badapple.family import head_rows, played_key_heads
from badapple.head import HeadWeights, normalised_input, split_heads

# Keep ‖u‖² below 1 - ε (with this margin) so the null-space term of the lift stays real.
BALL_MARGIN = 1e-4
# Under a norm over all heads: inputs adding query (key) energy to the other heads only, so a
# played head's query and key can each be less than the whole of their row's energy.
MASS_DIRECTIONS = 2  # of each
# A direction of the joint basis whose energy is under this share of the largest is dropped.
RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ReachableSpace:
    """Whitened coordinates of a layer's queries and keys, for the heads of a `HeadWeights`."""

    offset: torch.Tensor  # [D] c: the queries and keys of a row whose z is 0; D = (H+G)·hd
    basis: torch.Tensor  # [D, D] √d·Lᵀ: qk = offset + u @ basis (ρ·I for x, see to_ball)
    lift: torch.Tensor  # [D, d] √d·L⁻¹Acᵀ: z = u @ lift
    # [d] unit, orthogonal to Ac's columns (centred: LayerNorm); 0 where a norm over all heads
    # needs none
    null_direction: torch.Tensor
    radius: float  # largest ‖u‖ a solver may use
    # Under a norm over all heads (OLMo 2): mean(q²) of every head's queries is u E uᵀ for
    # query_energy E [D, D], mean(k²) of every key head's keys ‖u‖² - u E uᵀ; x = u @ lift
    # exactly, and unlift [d, D] takes x back. None otherwise.
    query_energy: torch.Tensor | None = None
    unlift: torch.Tensor | None = None
    # Under a norm after each head's projection (Qwen3, Gemma 3) the solver's rows are not u but
    # x = u @ basis / ρ (`_direction_coordinates`): basis is then ρ·I, `projection_scale` ρ (a
    # product by it is all the basis does, at a D x D matmul's saving), and u = x @ to_ball
    # [D, D]. None: the rows are u.
    to_ball: torch.Tensor | None = None
    projection_scale: float | None = None

    @property
    def dims(self) -> int:
        return self.basis.shape[0]


def reachable_space(weights: HeadWeights) -> ReachableSpace:
    """The ellipsoid of `weights`' queries and keys (or, under a norm over all heads, the
    subspace of `_joint_norm_space`): computed in float64 on the CPU (an Apple GPU has no
    float64), returned in float32 on the weights' device."""
    if weights.every_query_weight is not None:
        return _joint_norm_space(weights)
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
    basis, to_ball, scale = root_d * cholesky.T, None, None  # [D, D] upper triangular
    if weights.query_norm is not None:
        basis, to_ball = _direction_coordinates(basis)
        to_ball, scale = to_ball.float().to(device), float(basis[0, 0])
    return ReachableSpace(
        offset=offset.float().to(device),
        basis=basis.float().to(device),
        lift=lift.float().to(device),
        null_direction=direction.float().to(device),
        radius=math.sqrt(1 - weights.ln_eps) * (1 - BALL_MARGIN),
        to_ball=to_ball,
        projection_scale=scale,
    )


def _direction_coordinates(basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The solver's coordinates under a norm after each head's projection: the projections
    themselves, x = u @ basis / ρ, rather than the ball's u. basis [D, D] upper triangular ->
    (ρ·I, to_ball = ρ·basis⁻¹), so that qk = offset + x @ (ρ·I) and u = x @ to_ball.

    The norm shows each head only the direction of its query and key, and in u that direction
    is u @ basis normalised: along the ellipsoid's long axes a step of u turns it far less than
    along the short ones, by the ratio of basis' singular values, which random init keeps near
    1 and trained weights spread over 100× and more. In x a step turns every direction alike.
    ρ, the geometric mean of basis' singular values (|det|^(1/D), from its diagonal), keeps
    the rows' scale that of u, so the rates stay those measured in u. Measured on 16 frames of
    the Qwen3-0.6B stand-in spread as trained (benchmarks/families.py) on its head 15: mae 0.0022
    in x, 0.0057 in u, in 306 steps a frame rather than 481; its round stand-in 0.0009 (0.0010),
    Gemma-3-270M's 0.0006 (0.0008).

    Only under such a norm: elsewhere the scores see the projections' lengths too, and a row
    must travel the ellipsoid's long axes, up to σ_max/ρ in x where u reaches them at 1. On
    SmolLM2-135M (real) x left its weak layer 0 (long axes 40-100× the rest) at mae 0.40 over
    the 640-frame video (u: 0.029), though its best display went from 0.0011 (p99 0.0089) to
    0.0009 (0.0053)."""
    rho = basis.diagonal().abs().log().mean().exp()
    eye = torch.eye(len(basis), dtype=basis.dtype)
    return rho * eye, rho * torch.linalg.solve_triangular(basis, eye, upper=True)


def _joint_norm_space(weights: HeadWeights) -> ReachableSpace:
    """The subspace of inputs of the module's docstring (OLMo 2), line by line: float64 on the
    CPU, float32 on the weights' device."""
    every_query = weights.every_query_weight.cpu().double()  # Wq [d, heads·hd]
    every_key = weights.every_key_weight.cpu().double()  # Wk [d, key heads·hd]
    played = weights.query_key_weight.cpu().double()  # [d, (H + G)·hd]
    hd = weights.head_dim
    # The played heads' columns in Wq and Wk, and those of the key heads they use.
    group = every_query.shape[1] // every_key.shape[1]
    query_columns = head_rows(weights.heads, hd)
    key_columns = head_rows(played_key_heads(weights.heads, group), hd)
    generator = torch.Generator().manual_seed(0)
    # the least inputs putting 1 into one played column alone, then MASS_DIRECTIONS spreading
    # energy over the other heads' columns at random (no head favoured), for Wq and for Wk
    query_rows = _least_norm_inputs(every_query, _wanted(query_columns, every_query, generator))
    key_rows = _least_norm_inputs(every_key, _wanted(key_columns, every_key, generator))
    masses = torch.cat([query_rows[len(query_columns) :], key_rows[len(key_columns) :]])
    # off the played columns' span, the mass directions move no played projection
    played_basis, _ = torch.linalg.qr(played)  # [d, (H + G)·hd] orthonormal
    masses -= masses @ played_basis @ played_basis.T
    # Not the played columns themselves as well (2(H + G)·hd more directions): on 16 frames of
    # an OLMo-2-1B stand-in they took 2.4 times the time for mae 0.0016 rather than 0.0024,
    # and with its projections spread as trained ones are (singular values over 100x) mae
    # 0.081 rather than 0.011. Nor more MASS_DIRECTIONS: 8 of each played 0.0019 and 0.0062,
    # where 2 play 0.0016 and 0.0056 (at the rates of `solvers.span_scaled`).
    directions = torch.cat(
        [query_rows[: len(query_columns)], key_rows[: len(key_columns)], masses]
    )  # [k, d]
    # an orthonormal basis V of their span (dropping what is dependent)
    _, singular, right = torch.linalg.svd(directions, full_matrices=False)
    span = right[singular > singular[0] * RANK_TOLERANCE]  # V [D0, d]
    query_gram = _energy_gram(span, every_query)  # V Wq Wqᵀ Vᵀ / (heads·hd) [D0, D0]
    key_gram = _energy_gram(span, every_key)
    # whiten against the sum of the two energies, then turn to the weighted axes
    total, eigenvectors = torch.linalg.eigh(query_gram + key_gram)
    kept = total > total.max() * RANK_TOLERANCE
    whitening = eigenvectors[:, kept] / total[kept].sqrt()  # W [D0, D]: Wᵀ (Gq + Gk) W = I
    whitened_lift = whitening.T @ span  # [D, d]: Gq + Gk is now ‖u‖²
    norm_weight = torch.cat([weights.query_norm.flatten(), weights.key_norm.flatten()])
    axes = _weighted_axes(whitened_lift @ played, norm_weight.cpu().double())  # R [D, D]
    lift = axes.T @ whitened_lift  # [D, d]: u = u_whitened @ R, an orthogonal turn
    query_energy = _energy_gram(lift, every_query)  # E = Rᵀ Wᵀ Gq W R [D, D]
    device = weights.position.device

    def out(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.float().to(device)

    return ReachableSpace(
        offset=out(torch.zeros(played.shape[1], dtype=torch.float64)),
        basis=out(lift @ played),
        lift=out(lift),
        null_direction=out(torch.zeros(weights.d_model, dtype=torch.float64)),
        radius=1.0,
        query_energy=out((query_energy + query_energy.T) / 2),
        unlift=out(torch.linalg.pinv(lift)),
    )


def _weighted_axes(basis: torch.Tensor, norm_weight: torch.Tensor) -> torch.Tensor:
    """The turn R [D, D] (orthogonal) of a joint-norm space's whitened coordinates whose axes
    are the directions that move the played queries and keys most, each projection column
    weighted by the norm's weight: the left singular vectors of basis ⊙ w, basis [D, (H+G)·hd],
    w [(H+G)·hd].

    The norm's weight w multiplies each dimension of a query and key after the norm, so a
    score moves with the weighted projections, and trained weights spread: the products
    w_q·w_k over a head's dimensions span 200× on the OLMo-2-1B stand-in spread as trained
    (benchmarks/families.py), where random init makes them all 1. The few dimensions with the
    largest weights then carry most of the scores, and Adam's rates, one per axis, can take
    them apart only where they lie along axes. Whitening fixes the coordinates' lengths but
    not their turn, and the query energy's eigenvectors (the axes before) lie along none.
    Measured on 17 frames of fades and dips to gray (the dance video's 38-42, 53-58, 84-89)
    on that stand-in's head 5: mae 0.0150 on these axes, 0.0275 on the query energy's
    eigenvectors (the axes before), 0.0291 on random ones, 0.0206 on basis' own singular
    vectors, unweighted; on its round stand-in 0.0044 (0.0056 before)."""
    left, _, _ = torch.linalg.svd(basis * norm_weight, full_matrices=True)
    return left


def _wanted(columns: torch.Tensor, projection: torch.Tensor, generator) -> torch.Tensor:
    """Outputs of a projection W [d, n] to aim inputs at: a 1 in each of `columns` alone, then
    MASS_DIRECTIONS random ones that are 0 there. -> [len(columns) + MASS_DIRECTIONS, n]"""
    outputs = projection.shape[1]
    one_hot = torch.zeros(len(columns), outputs, dtype=torch.float64)
    one_hot[torch.arange(len(columns)), columns] = 1.0
    spread = torch.randn(MASS_DIRECTIONS, outputs, generator=generator, dtype=torch.float64)
    spread[:, columns] = 0.0
    return torch.cat([one_hot, spread])


def _least_norm_inputs(projection: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """The least inputs x with x W = each row of `wanted` (as near as W allows): `wanted` @
    pinv(W) for W [d, n], wanted [k, n] -> [k, d]. A square W (OLMo 2's) by one LU solve, else
    through the smaller Gram matrix by Cholesky, and by pinv where either is singular (for a
    4096-wide W on two cores: 0.8 s for the LU, 2.0 s for the Gram and its Cholesky)."""
    d_model, outputs = projection.shape
    if outputs == d_model:  # x = wanted W⁻¹
        solution, info = torch.linalg.solve_ex(projection, wanted, left=False)
        if int(info) == 0:
            return solution
    elif outputs < d_model:  # pinv(W) = (WᵀW)⁻¹Wᵀ
        factor, info = torch.linalg.cholesky_ex(projection.T @ projection)
        if int(info) == 0:
            return torch.cholesky_solve(wanted.T, factor).T @ projection.T
    else:  # pinv(W) = Wᵀ(WWᵀ)⁻¹
        factor, info = torch.linalg.cholesky_ex(projection @ projection.T)
        if int(info) == 0:
            return torch.cholesky_solve((wanted @ projection.T).T, factor).T
    return wanted @ torch.linalg.pinv(projection)


def _energy_gram(span: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """The mean square of a projection's outputs as a quadratic form on the span's
    coordinates: V W Wᵀ Vᵀ / n for V [D0, d], W [d, n] -> [D0, D0]."""
    projected = span @ projection
    return projected @ projected.T / projection.shape[1]


def whitened_projections(whitened: torch.Tensor, space: ReachableSpace) -> torch.Tensor:
    """The queries and keys of whitened rows as the projection gives them (before any norm
    after it, rotary or head split): qk = offset + u basis, [B, T, D] laid out as [Q | K]."""
    if space.projection_scale is not None:  # basis is ρ·I
        return whitened * space.projection_scale + space.offset
    return whitened @ space.basis + space.offset


def whitened_query_side(whitened: torch.Tensor, space: ReachableSpace) -> torch.Tensor | None:
    """Under a norm over all heads, u E [B, T, D]: half the slope of the queries' mean square
    (`whitened_mean_squares`), which the solver's gradient needs too; else None."""
    if space.query_energy is None:
        return None
    return whitened @ space.query_energy


def whitened_mean_squares(
    whitened: torch.Tensor, space: ReachableSpace, query_side: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Under a norm over all heads, what it divides by (`head.joint_mean_squares`) for
    whitened rows: u E uᵀ and ‖u‖² - u E uᵀ, [B, T, D] -> 2 x [B, T]; else None.
    `query_side`: `whitened_query_side` where the caller has it already (one [D, D] product
    a solver step, not two)."""
    if space.query_energy is None:
        return None
    if query_side is None:
        query_side = whitened_query_side(whitened, space)
    query_squares = (query_side * whitened).sum(dim=-1)
    # the key energy is the rest of ‖u‖² (clamped: rounding must not make it negative)
    return query_squares, (whitened.square().sum(dim=-1) - query_squares).clamp(min=0)


def queries_keys_from_whitened(
    whitened: torch.Tensor, space: ReachableSpace, weights: HeadWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys of whitened rows, as the forward has them (each head its key
    head's keys, rotated by position): [B, T, D] -> 2 x [B, H, T, hd]."""
    projected = whitened_projections(whitened, space)
    return split_heads(projected, weights, whitened_mean_squares(whitened, space))


def project_to_sphere(whitened: torch.Tensor) -> torch.Tensor:
    """Scale every row onto the unit sphere: [..., D] -> same (a joint norm's scores see only
    a row's direction, so this moves no score but keeps every step the same size)."""
    return whitened / whitened.norm(dim=-1, keepdim=True).clamp(
        min=torch.finfo(whitened.dtype).tiny
    )


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
    Rows must lie inside the space (`project_to_space`); the solver's x under a norm after each
    head's projection are taken to u first (u = x @ to_ball). Line by line the lift of the
    module's docstring, with each row's z and null-space term kept as coefficients of fixed
    vectors:

        zᵢ = uᵢ @ lift                       ‖zᵢ‖² = d‖uᵢ‖² (lift's rows: orthogonal, norm √d)
        ẑᵢ = zᵢ + sᵢ n,  sᵢ = √(d(1-ε/a²) - d‖uᵢ‖²)
        xᵢ = a·ẑᵢ - wpeᵢ = a·[uᵢ, sᵢ] @ [lift; n] - wpeᵢ

    `scale` a (1: layer 0's inputs of unit scale) gives rows a times as large that the LayerNorm
    still takes to ẑᵢ: var(a·ẑᵢ) = a² - ε, and a·ẑᵢ / sqrt(a² - ε + ε) = ẑᵢ. A deeper layer's
    rows are lifted large (residual.py).
    """
    if weights.input_ln_weight is not None:
        if scale != 1:
            raise ValueError("a layer with an input norm is layer 0, lifted at scale 1")
        return _lift_through_input_norm(whitened, space, weights)
    d_model, tokens = weights.d_model, whitened.shape[1]
    if space.to_ball is not None:  # the solver's x, under a norm after each head's projection
        whitened = whitened @ space.to_ball
    if space.query_energy is not None:  # a norm over all heads: x = u @ lift, exactly
        return Factored(
            coefficients=whitened * scale if scale != 1 else whitened,
            basis=space.lift,
            offset=-weights.position[:tokens],
        )
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


def _input_norm_map(weights: HeadWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """M of the module's docstring as a [d, d] matrix acting on rows (v @ M), and M βₑ [d], in
    float64 on the CPU."""
    gamma = weights.input_ln_weight.cpu().double()  # γₑ [d]
    if bool((gamma == 0).any()):
        raise UserError(
            "the model's input LayerNorm has a weight of 0, so its output cannot be steered "
            "there; this checkpoint cannot be played"
        )
    inverse = 1 / gamma  # Γ's diagonal
    # v @ M = Γv - (mean(Γv) / mean(Γ1)) Γ1: diag(Γ) less the rank-one term taking out the mean
    mapping = torch.diag(inverse) - torch.outer(inverse, inverse) / inverse.sum()
    return mapping, weights.input_ln_bias.cpu().double() @ mapping


def _input_norm_scales(
    rows: torch.Tensor, null: torch.Tensor, offset: torch.Tensor, squared: torch.Tensor, eps: float
) -> torch.Tensor:
    """Each row's a: ‖a·r + w(a)·m - o‖² = d(1 - εₑ), with r = z M [N, d], m = n M [d],
    o = M βₑ [d], w(a) = √(a²(d - ‖z‖²) - dε) (a times the null-space term s of
    `lift_factored` at scale a) and squared = ‖z‖² [N]; float64. -> [N], NaN where no a
    reaches the row. The norm is a quadratic in a and w, so each row needs three dot products
    and the search none over d."""
    d_model = rows.shape[-1]
    room = d_model - squared  # d - ‖z‖² = d(1 - ‖u‖²)
    row_row, row_null, row_offset = rows.square().sum(-1), rows @ null, rows @ offset  # [N]
    null_null, null_offset, offset_offset = null @ null, null @ offset, offset @ offset

    def norms(scale: torch.Tensor) -> torch.Tensor:  # ‖zₑ‖² at each row's scale [N]
        slack = (scale.square() * room - d_model * eps).clamp(min=0).sqrt()  # w(a)
        return (
            scale.square() * row_row
            + slack.square() * null_null
            + offset_offset
            + 2 * scale * slack * row_null
            - 2 * scale * row_offset
            - 2 * slack * null_offset
        )

    wanted = d_model * (1 - eps)  # εₑ and ε: the two norms' eps, one in BLOOM
    low = (d_model * eps / room).sqrt()  # the least a: w = 0
    reachable = norms(low) < wanted
    high = torch.ones_like(low).maximum(low)
    for _ in range(64):  # double until over: the norm grows like a²
        over = norms(high) >= wanted
        if bool(over[reachable].all()):
            break
        high = torch.where(over, high, 2 * high)
    for _ in range(80):  # bisect to float64's precision
        middle = (low + high) / 2
        over = norms(middle) >= wanted
        low, high = torch.where(over, low, middle), torch.where(over, middle, high)
    return torch.where(reachable, (low + high) / 2, torch.nan)


def _lift_through_input_norm(
    whitened: torch.Tensor, space: ReachableSpace, weights: HeadWeights
) -> Factored:
    """`lift_factored` through an input LayerNorm (BLOOM's), as the module's docstring derives:
    each row lifted at its own scale a, then taken back through the input norm by M.

    [B, T, D] -> coefficients a·[u, s] [B, T, D + 1], basis [lift; n] M [D + 1, d], offset
    -M βₑ - P [T, d]."""
    if weights.norm != "layer":
        raise ValueError("an input norm before an RMSNorm is not handled: it sees the mean")
    d_model, tokens, device = weights.d_model, whitened.shape[1], whitened.device
    eps = weights.ln_eps
    if weights.input_ln_eps != eps:
        raise ValueError("the input norm's eps must be the layer norm's (BLOOM's are one)")
    mapping, shifted_bias = _input_norm_map(weights)
    u = whitened.cpu().double()  # [B, T, D]
    lift = space.lift.cpu().double() @ mapping  # [D, d]
    null = space.null_direction.cpu().double() @ mapping  # [d]
    squared = d_model * u.square().sum(dim=-1)  # ‖z‖² [B, T]
    scales = _input_norm_scales(
        (u @ lift).flatten(0, 1), null, shifted_bias, squared.flatten(), eps
    ).view(squared.shape)  # a [B, T]
    if bool(scales.isnan().any()):
        raise UserError(
            "some rows cannot pass the model's input LayerNorm (its weights are too small, or "
            "its biases too large, in their directions), so no inputs_embeds give them; play "
            "another head"
        )
    slack = (scales.square() * (d_model - squared) - d_model * eps).clamp(min=0).sqrt()  # a·s
    coefficients = torch.cat([scales[..., None] * u, slack[..., None]], dim=-1)
    return Factored(
        coefficients=coefficients.float().to(device),
        basis=torch.cat([lift, null[None]]).float().to(device),
        offset=(-shifted_bias - weights.position[:tokens].cpu().double()).float().to(device),
    )


def whiten_embeddings(
    embeddings: torch.Tensor, space: ReachableSpace, weights: HeadWeights
) -> torch.Tensor:
    """The whitened coordinates of existing inputs_embeds (e.g. a saved frame's), the inverse of
    `lift_factored` on what the heads see: [B, T, d] -> [B, T, (H+G)·hd]."""
    hidden = normalised_input(embeddings, weights)  # [B, T, d]
    if space.unlift is not None:  # a norm over all heads: the rows' direction in the subspace
        return project_to_sphere(hidden @ space.unlift)
    projected = hidden @ weights.query_key_weight + weights.query_key_bias  # qk [B, T, D]
    # u @ basis = qk - offset, with basis upper triangular
    return torch.linalg.solve_triangular(
        space.basis, projected - space.offset, upper=True, left=False
    )


def project_to_space(rows: torch.Tensor, space: ReachableSpace) -> torch.Tensor:
    """The solver's rows back into `space`'s reachable set, each scaled toward its centre:
    into the ball of u, into the ellipsoid of x (u = x @ to_ball: under a norm after each
    head's projection, where the scaling keeps every head's direction), or, under a norm over
    all heads, onto the sphere. [..., D] -> same."""
    if space.query_energy is not None:
        return project_to_sphere(rows)
    if space.to_ball is None:
        return project_to_ball(rows, space.radius)
    norms = (rows @ space.to_ball).norm(dim=-1, keepdim=True)  # ‖u‖
    return rows * (space.radius / norms.clamp(min=space.radius))
