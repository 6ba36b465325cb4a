"""The played heads: their few weights, taken from a checkpoint (see checkpoint.py), and their
forward, the same for every family (family.py reads each family's tensors into `HeadWeights`).

Only the played layer matters, and of it only the queries and keys of the chosen heads, so the
whole model is never built. Row i of the layer's input X becomes

    H = Norm(X + P);  Q = H Wq + bq;  K = H Wk + bk;  in some families each head's query and
    key then RMS-normalised (Qwen3, Gemma 3), or every head's queries together and every
    key head's keys together (OLMo 2);  then both rotated by position (rotary families, on
    the layers that rotate: `Family.rotary_config`);
    S = cap·tanh((Q Kᵀ · scale + b) / cap)

which is exactly the score the model feeds its softmax. Norm is a LayerNorm (GPT-2: centred, γ
and β), an RMSNorm (Llama: not centred, γ only) or none (OLMo 2, whose norms come after each
block's attention and MLP: its attention sees the stream as it is); BLOOM normalises its inputs
once more before layer 0 (`word_embeddings_layernorm`), so its layer 0 sees
Norm(LayerNorm_e(X)). b is ALiBi's bias (BLOOM, MPT: slope_h · key position, the same for every
row), 0 elsewhere; the cap is Gemma 2's `attn_logit_softcapping` (none elsewhere). At layer 0, X
is the input embedding and P the learned position table (GPT-2's wpe), or 0 where the positions
rotate Q and K instead; at a deeper layer X is the residual stream entering it, which holds the
table's positions already (residual.py), and P = 0. A model that multiplies its inputs by m
before layer 0 (Granite) has layer 0 see Norm(m·X + P), which is Norm(X + P/m) with the norm's
ε/m². Under grouped-query attention several query heads share one key head: the keys are held
once per key head and each played head takes its own (`key_of_head`).
"""

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from badapple.checkpoint import Checkpoint, read_tensors
from badapple.errors import UserError
from badapple.family import rotary_tables


@dataclass(frozen=True)
class HeadWeights:
    """What a layer needs to turn its input into the scores of some of its heads."""

    heads: tuple[int, ...]  # which heads, in the order their maps come out
    position: torch.Tensor  # [T, d] the table added to the input; zeros deeper or rotary
    norm: str  # "layer" (LayerNorm), "rms" (RMSNorm) or "none" (the input as it is: OLMo 2)
    ln_weight: torch.Tensor  # [d] the norm's gamma
    ln_bias: torch.Tensor  # [d] its beta (zeros for RMSNorm)
    # The heads' query columns, head after head, then the key columns of the key heads they
    # use, each once: [Wq | Wk], as x @ W + b.
    query_key_weight: torch.Tensor  # [d, (H + G) * hd]
    query_key_bias: torch.Tensor  # [(H + G) * hd]
    ln_eps: float
    scale: float  # multiplies Q Kᵀ: 1 / sqrt(head_dim) mostly
    key_of_head: tuple[int, ...]  # for each played head, which of the G key heads it uses
    rotary_cos: torch.Tensor | None = None  # [T, r] rotary positions, None for none
    rotary_sin: torch.Tensor | None = None  # [T, r]
    causal: bool = True  # False: every token sees every other (BERT), the whole square
    # A norm after the projection (Qwen3, Gemma 3): each head's query becomes
    # q / sqrt(mean(q²) + ε) ⊙ query_norm, each key likewise, before the rotary positions.
    # None: no such norm.
    query_norm: torch.Tensor | None = None  # [hd] its weight (Gemma's 1 + weight, folded in)
    key_norm: torch.Tensor | None = None  # [hd]
    query_key_norm_eps: float = 1e-6
    # OLMo 2's norm over all heads at once: the mean in q / sqrt(mean(q²) + ε) runs over every
    # head's query (every key head's key), so it needs every head's projection, and its weight
    # differs head by head: query_norm is then the played heads' share [H, 1, hd], key_norm
    # [G, 1, hd]. None: the norm (if any) is each head's own.
    every_query_weight: torch.Tensor | None = None  # [d, heads·hd] all the layer's query columns
    every_key_weight: torch.Tensor | None = None  # [d, key heads·hd]
    # ALiBi: added to head h's score on key j, whatever the query: slope_h · (j + constant)
    score_bias: torch.Tensor | None = None  # [H, T], None for none
    softcap: float | None = None  # scores become cap·tanh(s / cap) (Gemma 2); None for none
    # A LayerNorm of the inputs before the layer's own norm (BLOOM's word_embeddings_layernorm,
    # at layer 0): its gamma [d], beta [d] and eps; None for none
    input_ln_weight: torch.Tensor | None = None
    input_ln_bias: torch.Tensor | None = None
    input_ln_eps: float = 0.0

    @property
    def d_model(self) -> int:
        return self.ln_weight.shape[0]

    @property
    def key_heads(self) -> int:  # G
        return max(self.key_of_head) + 1

    @property
    def head_dim(self) -> int:
        return self.query_key_weight.shape[1] // (len(self.heads) + self.key_heads)

    def to(self, device: torch.device | str) -> "HeadWeights":
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def load_head(
    checkpoint: Checkpoint, heads: tuple[int, ...], tokens: int, layer: int = 0
) -> HeadWeights:
    """The weights of `heads` of `layer` for sequences of `tokens` tokens."""
    shape, family = checkpoint.shape, checkpoint.family
    for head in heads:
        if not 0 <= head < shape.heads:
            raise UserError(
                f"head {head} is out of range: {checkpoint.name} has {shape.heads} heads "
                f"per layer; pick one of 0..{shape.heads - 1}"
            )
    if tokens > shape.positions:
        raise UserError(
            f"{tokens} tokens need {tokens} positions but {checkpoint.name} "
            f"has {shape.positions}; rerun download.py with a smaller --size"
        )

    window = checkpoint.config.get("sliding_window")
    windowed = checkpoint.config.get("use_sliding_window", True)  # qwen2 says, mistral doesn't
    kinds = checkpoint.config.get("layer_types")  # gemma2: every other layer slides
    if kinds and len(kinds) > layer and kinds[layer] != "sliding_attention":
        windowed = False  # this layer sees every token (the blocks before run in transformers)
    if window and windowed and tokens > window:
        raise UserError(
            f"{tokens} tokens are more than {checkpoint.name}'s sliding window of {window}: its "
            "heads would not see the sink; rerun download.py with a smaller --size"
        )

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        return read_tensors(checkpoint, names)

    try:
        attention = family.attention(checkpoint.config, read, tuple(heads), layer)
    except UserError as error:
        raise UserError(f"{checkpoint.name}: {error}") from None
    if layer == 0 and family.position_table:
        table = read([family.position_table])[family.position_table]
        offset = family.position_offset(checkpoint.config)
        position = table[offset : offset + tokens].clone()
        if family.added_row:
            position += read([family.added_row])[family.added_row][0]
    else:  # deeper, the residual stream holds the table's positions; rotary ones rotate
        position = torch.zeros(tokens, shape.d_model)
    if layer == 0:  # the model multiplies inputs_embeds by m first (Granite's, 12)
        # Norm(m·X + P) is Norm(X + P/m) with ε/m²: a norm sees its input's scale through ε only
        multiplier = family.input_multiplier(checkpoint.config)
        position = position / multiplier
        attention = {**attention, "ln_eps": attention["ln_eps"] / multiplier**2}
    extra = {}
    rotary_config = family.rotary_config(checkpoint.config, layer)
    if rotary_config is not None:  # None: no rotary, or a layer without positions (SmolLM3's)
        cos, sin = rotary_tables(rotary_config, shape.head_dim, tokens, layer)
        extra = dict(rotary_cos=cos, rotary_sin=sin)
    if family.score_bias:  # ALiBi: the played heads' rows of the model's bias
        extra["score_bias"] = family.score_bias(checkpoint.config, tokens)[list(heads)]
    return HeadWeights(
        heads=tuple(heads), position=position, causal=family.causal, **attention, **extra
    )


def normalised_input(embeddings: torch.Tensor, weights: HeadWeights) -> torch.Tensor:
    """Norm(X + P), or Norm(LayerNorm_e(X + P)) under an input norm: [B, T, d] -> [B, T, d]."""
    tokens = embeddings.shape[1]
    shifted = embeddings + weights.position[:tokens]
    if weights.norm == "none":
        return shifted
    if weights.input_ln_weight is not None:
        shifted = F.layer_norm(
            shifted,
            (weights.d_model,),
            weights.input_ln_weight,
            weights.input_ln_bias,
            weights.input_ln_eps,
        )
    if weights.norm == "layer":
        return F.layer_norm(
            shifted, (weights.d_model,), weights.ln_weight, weights.ln_bias, weights.ln_eps
        )
    mean_square = shifted.square().mean(dim=-1, keepdim=True)
    return shifted * torch.rsqrt(mean_square + weights.ln_eps) * weights.ln_weight


def split_heads(
    projected: torch.Tensor,
    weights: HeadWeights,
    mean_squares: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Per-head queries and keys, normalised where the family has a norm after the projection
    and rotated by position, from the projections laid out [Q | K]:
    [B, T, (H + G)·hd] -> 2 x [B, H, T, hd]. The one way both the forward and the solvers'
    whitened coordinates (reachable.py) become scores. Under a norm over all heads (OLMo 2)
    `mean_squares` are each row's mean(q²) over every head's query and mean(k²) over every
    key head's key, [B, T] each (`joint_mean_squares`)."""
    batch, tokens, _ = projected.shape
    heads, hd = len(weights.heads), weights.head_dim
    queries = projected[..., : heads * hd].view(batch, tokens, heads, hd).transpose(1, 2)
    keys = projected[..., heads * hd :].view(batch, tokens, weights.key_heads, hd).transpose(1, 2)
    eps = weights.query_key_norm_eps
    if weights.every_query_weight is not None:
        query_squares, key_squares = mean_squares  # [B, T] each
        queries = queries * torch.rsqrt(query_squares + eps)[:, None, :, None] * weights.query_norm
        keys = keys * torch.rsqrt(key_squares + eps)[:, None, :, None] * weights.key_norm
    elif weights.query_norm is not None:
        queries = rms_normalised(queries, weights.query_norm, eps)
        keys = rms_normalised(keys, weights.key_norm, eps)  # [B, G, T, hd]
    keys = keys[:, list(weights.key_of_head)]  # [B, H, T, hd]: each head its key head's
    return rotate(queries, weights), rotate(keys, weights)


def rms_normalised(vectors: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """A norm after the projection: each [..., hd] vector over its root mean square, times the
    norm's weight [hd] (in float32, as Qwen3RMSNorm and Gemma3RMSNorm compute it)."""
    return vectors * torch.rsqrt(vectors.square().mean(dim=-1, keepdim=True) + eps) * weight


def rotate(vectors: torch.Tensor, weights: HeadWeights, inverse: bool = False) -> torch.Tensor:
    """Rotary positions: row t of [B, H, T, hd] rotated by its position's angles (`inverse`:
    back, its transpose, for gradients). Rotations are orthogonal, so the reachable ball of
    queries and keys is the same before and after: they rotate after projecting."""
    if weights.rotary_cos is None:
        return vectors
    tokens = vectors.shape[-2]
    cos, sin = weights.rotary_cos[:tokens], weights.rotary_sin[:tokens]  # [T, r]
    rotary = cos.shape[-1]  # the first r dimensions rotate (all but under partial rotary)
    part, rest = vectors[..., :rotary], vectors[..., rotary:]
    half = rotary // 2
    if not inverse:
        # rotate_half(v) = [-v₂, v₁]: pairs dimension i with i + r/2
        turned = torch.cat([-part[..., half:], part[..., :half]], dim=-1)
        rotated = part * cos + turned * sin
    else:
        # Rᵀ: v·cos - rotate_half(v·sin), since rotate_half is a skew map (its transpose is -it)
        scaled = part * sin
        rotated = part * cos + torch.cat([scaled[..., half:], -scaled[..., :half]], dim=-1)
    return torch.cat([rotated, rest], dim=-1) if rest.shape[-1] else rotated


def joint_mean_squares(
    hidden: torch.Tensor, weights: HeadWeights
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What a norm over all heads (OLMo 2) divides by: each row's mean(q²) over every head's
    query and mean(k²) over every key head's key, [B, T, d] -> 2 x [B, T]; None without one."""
    if weights.every_query_weight is None:
        return None
    return (
        (hidden @ weights.every_query_weight).square().mean(dim=-1),
        (hidden @ weights.every_key_weight).square().mean(dim=-1),
    )


def queries_keys(hidden: torch.Tensor, weights: HeadWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys from the norm's output: [B, T, d] -> 2 x [B, H, T, hd]."""
    # One matmul for queries and keys together: a skinny [d, 64] one runs far below peak.
    projected = hidden @ weights.query_key_weight + weights.query_key_bias
    return split_heads(projected, weights, joint_mean_squares(hidden, weights))


def attention_scores(embeddings: torch.Tensor, weights: HeadWeights) -> torch.Tensor:
    """The pre-softmax scores S = cap·tanh((Q Kᵀ · scale + b) / cap) of each head:
    [B, T, d] -> [B, H, T, T]."""
    queries, keys = queries_keys(normalised_input(embeddings, weights), weights)
    return finished_scores(queries @ keys.transpose(-1, -2) * weights.scale, weights)


def finished_scores(products: torch.Tensor, weights: HeadWeights) -> torch.Tensor:
    """The scores from Q Kᵀ · scale: ALiBi's bias added, then Gemma 2's cap, where the layer has
    them (as the model does: the cap comes before the mask). [B, H, T, T] -> same."""
    if weights.score_bias is not None:
        tokens = products.shape[-1]
        products = products + weights.score_bias[:, None, :tokens]  # [H, 1, T]: every row's
    if weights.softcap is not None:
        products = torch.tanh(products / weights.softcap) * weights.softcap
    return products


def attention_weights(scores: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """A head's attention weights from its scores: softmax over the keys, a causal head's with
    the future masked. [..., T, T]"""
    if not causal:
        return scores.softmax(dim=-1)
    tokens = scores.shape[-1]
    future = torch.ones(tokens, tokens, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)
