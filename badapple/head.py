"""The GPT-2 head: its few weights, taken from a checkpoint (see checkpoint.py), and its forward.

Only the played layer matters, and of it only the queries and keys of the chosen heads, so the
whole model is never built: we read `h.L.ln_1` and keep the heads' columns of `h.L.attn.c_attn`
(a Conv1D, used as x @ W + b with W [d, 3d] laid out as [Q | K | V]) and run

    H = LayerNorm_ln1(X + P);  Q = H Wq + bq;  K = H Wk + bk;  S = Q Kᵀ / sqrt(head_dim)

which is exactly the score GPT-2 feeds its causal softmax. At layer 0, X is the input embedding
and P = wpe[:T]; at a deeper layer X is the residual stream entering it, which holds the
positions already (residual.py), and P = 0.
"""

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from badapple.checkpoint import POSITION_TABLE, Checkpoint, attention_tensors, read_tensors
from badapple.errors import UserError


@dataclass(frozen=True)
class HeadWeights:
    """What a layer needs to turn its input into the scores of some of its heads."""

    heads: tuple[int, ...]  # which heads, in the order their maps come out
    position: torch.Tensor  # [T, d] wpe rows 0..T-1 at layer 0; zeros deeper
    ln_weight: torch.Tensor  # [d] ln_1's gamma
    ln_bias: torch.Tensor  # [d] ln_1's beta
    # The heads' query columns of c_attn, head after head, then their key columns: [Wq | Wk].
    query_key_weight: torch.Tensor  # [d, 2 * H * hd]
    query_key_bias: torch.Tensor  # [2 * H * hd]
    ln_eps: float
    scale: float  # multiplies Q Kᵀ: 1 / sqrt(head_dim)

    @property
    def d_model(self) -> int:
        return self.ln_weight.shape[0]

    @property
    def head_dim(self) -> int:
        return self.query_key_weight.shape[1] // (2 * len(self.heads))

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
    d, n_head = checkpoint.n_embd, checkpoint.n_head
    for head in heads:
        if not 0 <= head < n_head:
            raise UserError(
                f"head {head} is out of range: {checkpoint.name} has {n_head} heads "
                f"per layer; pick one of 0..{n_head - 1}"
            )
    if tokens > checkpoint.n_positions:
        raise UserError(
            f"{tokens} tokens need {tokens} positions but {checkpoint.name} "
            f"has {checkpoint.n_positions}; rerun download.py with a smaller --size"
        )
    ln_weight, ln_bias, qkv_weight, qkv_bias = read_tensors(
        checkpoint, list(attention_tensors(layer))
    ).values()
    if qkv_weight.shape != (d, 3 * d):
        raise UserError(
            f"{checkpoint.name}: c_attn is {tuple(qkv_weight.shape)}, expected "
            f"({d}, {3 * d}) for a GPT-2 layer; the checkpoint does not match its config"
        )
    head_dim = d // n_head
    query_columns = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])
    columns = torch.cat([query_columns, query_columns + d])  # K follows Q in c_attn's output
    scale = 1 / math.sqrt(head_dim) if checkpoint.config.get("scale_attn_weights", True) else 1.0
    if checkpoint.config.get("scale_attn_by_inverse_layer_idx", False):
        scale /= layer + 1  # as GPT2Attention does
    if layer == 0:
        position = read_tensors(checkpoint, [POSITION_TABLE])[POSITION_TABLE][:tokens].clone()
    else:  # the residual stream entering the layer holds the positions already
        position = torch.zeros(tokens, d)
    return HeadWeights(
        heads=tuple(heads),
        position=position,
        ln_weight=ln_weight,
        ln_bias=ln_bias,
        query_key_weight=qkv_weight[:, columns].contiguous(),
        query_key_bias=qkv_bias[columns].contiguous(),
        ln_eps=float(checkpoint.config.get("layer_norm_epsilon", 1e-5)),
        scale=scale,
    )


def layer_norm_input(embeddings: torch.Tensor, weights: HeadWeights) -> torch.Tensor:
    """ln_1(X + wpe): [B, T, d] -> [B, T, d]."""
    tokens = embeddings.shape[1]
    return F.layer_norm(
        embeddings + weights.position[:tokens],
        (weights.d_model,),
        weights.ln_weight,
        weights.ln_bias,
        weights.ln_eps,
    )


def queries_keys(hidden: torch.Tensor, weights: HeadWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys from ln_1's output: [B, T, d] -> 2 x [B, H, T, hd]."""
    batch, tokens, _ = hidden.shape
    # One matmul for queries and keys together: a skinny [d, 64] one runs far below peak.
    projected = hidden @ weights.query_key_weight + weights.query_key_bias  # [B, T, 2*H*hd]
    split = projected.view(batch, tokens, 2, len(weights.heads), weights.head_dim)
    queries, keys = split.permute(2, 0, 3, 1, 4)  # 2 x [B, H, T, hd]
    return queries, keys


def attention_scores(embeddings: torch.Tensor, weights: HeadWeights) -> torch.Tensor:
    """The pre-softmax scores S = Q Kᵀ / sqrt(hd) of each head: [B, T, d] -> [B, H, T, T]."""
    queries, keys = queries_keys(layer_norm_input(embeddings, weights), weights)
    return queries @ keys.transpose(-1, -2) * weights.scale


def causal_attention(scores: torch.Tensor) -> torch.Tensor:
    """GPT-2's attention weights from its scores: causal mask, softmax over keys. [..., T, T]"""
    tokens = scores.shape[-1]
    future = torch.ones(tokens, tokens, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)
