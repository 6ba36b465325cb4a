"""Model families: one small adapter per family turns its config and tensor names into the one
description of a played layer that the rest of the code works on (`head.HeadWeights`).

What differs between the families, at the played layer (each checked against the transformers
code of the locked version, the reference):

    gpt2                LayerNorm ln_1 of x + wpe; fused Conv1D c_attn [d, 3d] laid out [Q | K | V]
                        (x @ W + b); scores / √hd (or not: scale_attn_weights), and / (layer + 1)
                        under scale_attn_by_inverse_layer_idx
    llama, mistral,     RMSNorm input_layernorm (no centring, no bias); separate q_proj, k_proj
    qwen2               (nn.Linear: x @ Wᵀ + b; biases in qwen2); rotary positions on queries and
                        keys (the config's rope parameters, scaling included); grouped-query
                        attention: query head h uses key head h // (heads / key heads); no table
    gemma               llama's, with RMSNorm's weight used as (1 + weight); its √d scale is its
                        token embedding's (GemmaTextScaledWordEmbedding), so inputs_embeds are
                        taken as they are
    qwen3, gemma3_text  llama's (gemma3_text: gemma's, scores scaled by query_pre_attn_scalar^-1/2),
                        with each head's query and key RMS-normalised after the projection
                        (q_norm, k_norm: one weight [hd] for all heads), before the rotary
                        positions; gemma3_text's local and global layers rotate with thetas of
                        their own (rope_parameters by config.layer_types)
    olmo2               llama's projections, grouped keys and rotary, but no norm before the
                        attention (it normalises each block's outputs instead, post_attention_
                        and post_feedforward_layernorm): the attention sees the residual stream
                        as it is; then q_norm and k_norm RMS-normalise every head's queries at
                        once (and every key head's keys), one weight [heads·hd] across them
    mixtral             mistral's attention; its experts (MoE) only live in the blocks before a
                        deeper played layer, which run through transformers (residual.py), from
                        its checkpoints' older layout (`as_modules`)
    smollm3             llama's, but the layers no_rope_layers marks (every 4th) have no rotary:
                        no positions at all in their scores (`layer_rotary`)
    granite             llama's, with scores scaled by attention_multiplier instead of 1/√hd, and
                        inputs_embeds multiplied by embedding_multiplier before layer 0 (played
                        there as the norm's ε / multiplier², the same map; `input_multiplier`)
    starcoder2          llama's grouped keys and rotary, with a LayerNorm (bias) and q/k biases
                        (use_bias)
    phi3 (Phi-3,        llama's, with one fused qkv_proj [(heads + 2·key heads)·hd, d] laid out
    Phi-4-mini)         [queries | keys | values], and rotary on the first partial_rotary_factor
                        of each head's dimensions (Phi-4-mini: 0.75), longrope's scaling included
    gpt_neox (Pythia)   LayerNorm with bias; fused query_key_value [3d, d] laid out head by head
                        as [q, k, v]; rotary positions on the first rotary_pct of each head's
                        dimensions only
    gpt_neo             GPT-2's wpe and LayerNorm; q_proj/k_proj without bias; scores not
                        divided by √hd; its "local" layers see only a window: refused
    bert, roberta       bidirectional: no causal mask, one head shows the whole square; post-LN,
                        so layer 0 sees LayerNorm(x + positions + token type 0's row) of its
                        embeddings directly (no block norm), and only layer 0 can be played;
                        RoBERTa's positions start at padding_idx + 1
    opt                 learned positions whose row t is table row t + 2; LayerNorm before the
                        attention (the OPTs that normalise after it, and those with a projection
                        of the inputs, are refused); queries scaled by 1/√hd inside
    gemma2              gemma's, with scores capped, cap·tanh(s/cap) (attn_logit_softcapping),
                        and scaled by query_pre_attn_scalar^-0.5, not 1/√hd; every other layer
                        sees a sliding window (4096 tokens in Gemma-2-2B: a frame fits)
    bloom               ALiBi: no positions in the inputs, slope_h · key position added to head
                        h's scores; word_embeddings_layernorm on the inputs before block 0, so
                        layer 0 sees LayerNorm(LayerNorm_e(x)), and only layer 0 is played (the
                        input norm bounds the residual stream that residual.py steers); fused
                        query_key_value [3d, d] head by head [q, k, v], as gpt_neox
    mpt                 ALiBi as bloom's, slope_h · (key position - (T - 1)) with its own slopes;
                        LayerNorm without bias (no_bias); fused Wqkv [3d, d] laid out [Q; K; V];
                        softmax_scale or 1/√hd; clip_qkv, qk_ln and the other attention types
                        are refused (transformers' MptAttention has none of them)

A family also names its blocks (for --layer: the blocks before the played one run through
transformers, residual.py) and its final norm, and says whether it is causal and pre-LN, which
layers rotate their positions, and what its inputs are multiplied by.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from badapple.errors import UserError

Read = Callable[[list[str]], dict[str, torch.Tensor]]  # plain names -> float32 tensors


@dataclass(frozen=True)
class Shape:
    """A model's sizes, whatever its config calls them."""

    d_model: int
    heads: int
    key_heads: int  # heads of keys (and values): fewer than `heads` under grouped-query attention
    head_dim: int
    layers: int
    positions: int  # the longest sequence it takes


@dataclass(frozen=True)
class Family:
    model_types: tuple[str, ...]
    example: str  # a hub id of the family, for messages
    name_prefixes: tuple[str, ...]  # what a head model's checkpoint puts before the base's names
    position_table: str | None  # the learned table added to the input, if any
    block: str  # the prefix of block i's tensors, as a format string
    final_norm: str  # the base model's attribute of its final norm (skipped by residual.py)
    shape: Callable[[dict], Shape]
    attention_tensors: Callable[[dict, int], tuple[str, ...]]  # (config, layer) -> names
    # (config, read, heads, layer) -> the HeadWeights fields but the positions
    attention: Callable[[dict, Read, tuple[int, ...], int], dict]
    rotary: bool = False  # positions rotate the queries and keys, rather than add to the input
    # (config, layer) -> the config whose rope parameters rotate that layer's queries and keys,
    # or None for a layer without positions (SmolLM3's every 4th): a rotary family whose layers
    # differ says so here, and rotary_tables reads what it returns
    layer_rotary: Callable[[dict, int], dict | None] = lambda config, layer: config
    # what the model multiplies inputs_embeds by before its first block (Granite's
    # embedding_multiplier): layer 0 sees the inputs that much larger
    input_multiplier: Callable[[dict], float] = lambda config: 1.0
    # (tensors as the checkpoint stores them) -> as transformers' modules hold them: the same but
    # for a family whose checkpoints keep an older layout (Mixtral's experts one by one)
    as_modules: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda tensors: (
        tensors
    )
    position_offset: Callable[[dict], int] = lambda config: 0  # the table's row of position 0
    # another row every position adds (BERT: token type 0's), as (config) -> its name
    added_row: str | None = None
    causal: bool = True
    # every block's update is bounded whatever the stream's scale, as it normalises its input
    # (or its outputs: OLMo 2), so --layer works (residual.py)
    pre_layer_norm: bool = True
    # ALiBi: (config, tokens) -> [heads, T], added to each head's scores on each key (bloom, mpt)
    score_bias: Callable[[dict, int], torch.Tensor] | None = None
    # why a pre-LN family's deeper layers cannot be played after all, if they cannot (bloom)
    deeper_refused: str | None = None

    @property
    def deeper_layers(self) -> bool:
        """Whether --layer L > 0 can be played exactly (residual.py)."""
        return self.pre_layer_norm and self.deeper_refused is None

    def block_prefix(self, layer: int) -> str:
        return self.block.format(layer)

    def rotary_config(self, config: dict, layer: int) -> dict | None:
        """The config whose rope parameters rotate layer `layer`'s queries and keys, or None
        where its positions do not rotate them (a table added to the input, or none at all)."""
        return self.layer_rotary(config, layer) if self.rotary else None

    def played_layer_tensors(self, config: dict, layer: int) -> tuple[str, ...]:
        """All that layer `layer`'s attention depends on: the position table, blocks
        0..layer-1 whole (a name ending in "." stands for every tensor under it) and the
        layer's own norm and projections."""
        table = tuple(name for name in (self.position_table, self.added_row) if name)
        blocks = tuple(self.block_prefix(index) for index in range(layer))
        return (*table, *blocks, *self.attention_tensors(config, layer))


def _int(config: dict, *names: str, default: int | None = None) -> int:
    """The first of `names` the config has, as an int."""
    for name in names:
        if config.get(name) is not None:
            return int(config[name])
    if default is None:
        raise UserError(f"the model's config.json has no {names[0]}; it is damaged")
    return default


def _shape(
    config: dict,
    d_model: str,
    heads: str,
    layers: str,
    positions: tuple[str, ...],
    *,
    layers_default: int | None = None,
    positions_default: int = 2048,
) -> Shape:
    """The Shape of a family whose every head has its own keys, of d / heads numbers, from the
    names its config gives them."""
    d, head_count = _int(config, d_model), _int(config, heads)
    return Shape(
        d_model=d,
        heads=head_count,
        key_heads=head_count,
        head_dim=d // head_count,
        layers=_int(config, layers, default=layers_default),
        positions=_int(config, *positions, default=positions_default),
    )


def played_key_heads(heads: tuple[int, ...] | list[int], group: int) -> list[int]:
    """The key heads that `heads` use under grouped-query attention, each once, in order: query
    head h uses key head h // group (group = heads / key heads; 1 without grouping)."""
    return sorted({head // group for head in heads})


def head_rows(heads: list[int] | tuple[int, ...], head_dim: int, stride: int = 0) -> torch.Tensor:
    """The indices of each head's head_dim numbers in a projection, head after head: head h's
    start at h·stride (stride: head_dim, the heads side by side, unless given)."""
    stride = stride or head_dim
    return torch.cat([torch.arange(h * stride, h * stride + head_dim) for h in heads])


def _linear_query_keys(
    query_weight: torch.Tensor,
    key_weight: torch.Tensor,
    query_bias: torch.Tensor | None,
    key_bias: torch.Tensor | None,
    query_rows: torch.Tensor,
    key_rows: torch.Tensor,
) -> dict:
    """HeadWeights' [Wq | Wk] and [bq | bk] from separate nn.Linear projections ([out, d],
    x @ Wᵀ + b): the played heads' query rows, then the key rows; a missing bias is zeros."""
    weight = torch.cat([query_weight[query_rows], key_weight[key_rows]]).T  # [d, (H + G)·hd]
    if query_bias is None:
        bias = torch.zeros(weight.shape[1])
    else:
        bias = torch.cat([query_bias[query_rows], key_bias[key_rows]])
    return dict(query_key_weight=weight.contiguous(), query_key_bias=bias.contiguous())


# --- gpt2 ----------------------------------------------------------------------------------


def _gpt2_shape(config: dict) -> Shape:
    # GPT2Config's defaults: 12 layers, 1024 positions
    names = ("n_embd", "n_head", "n_layer", ("n_positions", "n_ctx"))
    return _shape(config, *names, layers_default=12, positions_default=1024)


def _gpt2_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    return (
        f"h.{layer}.ln_1.weight",  # [d]
        f"h.{layer}.ln_1.bias",  # [d]
        f"h.{layer}.attn.c_attn.weight",  # [d, 3d], a Conv1D laid out [Q | K | V]
        f"h.{layer}.attn.c_attn.bias",  # [3d]
    )


def _gpt2_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _gpt2_shape(config)
    d, head_dim = shape.d_model, shape.head_dim
    tensors = read(list(_gpt2_attention_tensors(config, layer)))
    ln_weight, ln_bias, qkv_weight, qkv_bias = tensors.values()
    if qkv_weight.shape != (d, 3 * d):
        raise UserError(
            f"c_attn is {tuple(qkv_weight.shape)}, expected ({d}, {3 * d}) for a GPT-2 layer; "
            "the checkpoint does not match its config"
        )
    query_columns = head_rows(heads, head_dim)
    columns = torch.cat([query_columns, query_columns + d])  # K follows Q in c_attn's output
    scale = 1 / math.sqrt(head_dim) if config.get("scale_attn_weights", True) else 1.0
    if config.get("scale_attn_by_inverse_layer_idx", False):
        scale /= layer + 1  # as GPT2Attention does
    return dict(
        norm="layer",
        ln_weight=ln_weight,
        ln_bias=ln_bias,
        ln_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        query_key_weight=qkv_weight[:, columns].contiguous(),
        query_key_bias=qkv_bias[columns].contiguous(),
        key_of_head=tuple(range(len(heads))),
        scale=scale,
    )


GPT2 = Family(
    model_types=("gpt2",),
    example="openai-community/gpt2-xl",
    name_prefixes=("transformer.",),
    position_table="wpe.weight",
    block="h.{}.",
    final_norm="ln_f",
    shape=_gpt2_shape,
    attention_tensors=_gpt2_attention_tensors,
    attention=_gpt2_attention,
)


# --- llama, mistral, qwen2 -----------------------------------------------------------------


def _llama_shape(config: dict) -> Shape:
    d_model, heads = _int(config, "hidden_size"), _int(config, "num_attention_heads")
    return Shape(
        d_model=d_model,
        heads=heads,
        key_heads=_int(config, "num_key_value_heads", default=heads),
        head_dim=_int(config, "head_dim", default=d_model // heads),
        layers=_int(config, "num_hidden_layers"),
        positions=_int(config, "max_position_embeddings", default=2048),
    )


def _llama_has_bias(config: dict) -> bool:
    # qwen2's q/k/v always have a bias; llama's and mistral's only under attention_bias
    return config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False))


def _llama_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"layers.{layer}."
    names = [
        f"{prefix}input_layernorm.weight",  # [d]
        f"{prefix}self_attn.q_proj.weight",  # [heads·hd, d], an nn.Linear
        f"{prefix}self_attn.k_proj.weight",  # [key heads·hd, d]
    ]
    if _llama_has_bias(config):
        names += [f"{prefix}self_attn.q_proj.bias", f"{prefix}self_attn.k_proj.bias"]
    return tuple(names)


def _grouped_query_keys(
    shape: Shape,
    heads: tuple[int, ...],
    query_weight: torch.Tensor,
    key_weight: torch.Tensor,
    query_bias: torch.Tensor | None = None,
    key_bias: torch.Tensor | None = None,
) -> dict:
    """HeadWeights' projections and key_of_head from nn.Linear query and key projections
    ([heads·hd, d] and [key heads·hd, d], x @ Wᵀ + b) under grouped-query attention: query head
    h uses key head h // (heads / key heads), so the played heads' keys are those of the key
    heads they use, each once (two played heads of one group share its key columns)."""
    head_dim, group = shape.head_dim, shape.heads // shape.key_heads
    expected = (shape.heads * head_dim, shape.d_model), (shape.key_heads * head_dim, shape.d_model)
    if (tuple(query_weight.shape), tuple(key_weight.shape)) != expected:
        raise UserError(
            f"the query/key projections are {tuple(query_weight.shape)}/"
            f"{tuple(key_weight.shape)}, expected {expected[0]}/{expected[1]}; the checkpoint "
            "does not match its config"
        )
    key_heads = played_key_heads(heads, group)
    key_of_head = tuple(key_heads.index(head // group) for head in heads)
    projections = _linear_query_keys(
        query_weight,
        key_weight,
        query_bias,
        key_bias,
        head_rows(heads, head_dim),
        head_rows(key_heads, head_dim),
    )
    return dict(**projections, key_of_head=key_of_head)


def _self_attn_query_keys(
    shape: Shape, heads: tuple[int, ...], tensors: dict[str, torch.Tensor], prefix: str
) -> dict:
    """`_grouped_query_keys` of a layer's separate self_attn.q_proj and k_proj ([heads·hd, d],
    [key heads·hd, d]), with their biases where the checkpoint has them."""
    return _grouped_query_keys(
        shape,
        heads,
        tensors[f"{prefix}self_attn.q_proj.weight"],
        tensors[f"{prefix}self_attn.k_proj.weight"],
        tensors.get(f"{prefix}self_attn.q_proj.bias"),
        tensors.get(f"{prefix}self_attn.k_proj.bias"),
    )


def _llama_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _llama_shape(config)
    tensors = read(list(_llama_attention_tensors(config, layer)))
    prefix = f"layers.{layer}."
    norm_weight = tensors[f"{prefix}input_layernorm.weight"]
    return dict(
        norm="rms",
        ln_weight=norm_weight,
        ln_bias=torch.zeros_like(norm_weight),
        ln_eps=float(config.get("rms_norm_eps", 1e-6)),
        **_self_attn_query_keys(shape, heads, tensors, prefix),
        scale=1 / math.sqrt(shape.head_dim),
    )


LLAMA = Family(
    model_types=("llama", "mistral", "qwen2"),
    example="meta-llama/Llama-3.2-1B",
    name_prefixes=("model.",),
    position_table=None,
    block="layers.{}.",
    final_norm="norm",
    shape=_llama_shape,
    attention_tensors=_llama_attention_tensors,
    attention=_llama_attention,
    rotary=True,
)


# --- gemma ---------------------------------------------------------------------------------


def _gemma_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    attention = _llama_attention(config, read, heads, layer)
    # GemmaRMSNorm multiplies by (1 + weight), computed in float32 as there
    return {**attention, "ln_weight": 1.0 + attention["ln_weight"]}


GEMMA = replace(
    LLAMA,
    model_types=("gemma",),
    example="google/gemma-2b",
    attention=_gemma_attention,
)


# --- qwen3, gemma3_text: a norm after the projection ---------------------------------------


def _query_key_norm_tensors(config: dict, layer: int) -> tuple[str, ...]:
    return (
        *_llama_attention_tensors(config, layer),
        f"layers.{layer}.self_attn.q_norm.weight",  # [hd], one for every head
        f"layers.{layer}.self_attn.k_norm.weight",  # [hd]
    )


def _qwen3_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    attention = _llama_attention(config, read, heads, layer)
    norms = read(
        [f"layers.{layer}.self_attn.q_norm.weight", f"layers.{layer}.self_attn.k_norm.weight"]
    )
    query_norm, key_norm = norms.values()
    return {
        **attention,
        "query_norm": query_norm,
        "key_norm": key_norm,
        "query_key_norm_eps": float(config.get("rms_norm_eps", 1e-6)),
    }


QWEN3 = replace(
    LLAMA,
    model_types=("qwen3",),
    example="Qwen/Qwen3-0.6B",
    attention_tensors=_query_key_norm_tensors,
    attention=_qwen3_attention,
)


def _gemma3_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    attention = _qwen3_attention(config, read, heads, layer)
    # Gemma3RMSNorm multiplies by (1 + weight), the input's norm and the query/key norms alike;
    # the scores are scaled by query_pre_attn_scalar^-1/2, not by head_dim's
    return {
        **attention,
        "ln_weight": 1.0 + attention["ln_weight"],
        "query_norm": 1.0 + attention["query_norm"],
        "key_norm": 1.0 + attention["key_norm"],
        "scale": float(config.get("query_pre_attn_scalar", 256)) ** -0.5,
    }


GEMMA3 = replace(
    LLAMA,
    model_types=("gemma3_text",),
    example="google/gemma-3-270m",
    attention_tensors=_query_key_norm_tensors,
    attention=_gemma3_attention,
)


# --- olmo2: no norm before the attention, one norm over all heads after the projection ------


def _olmo2_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"layers.{layer}.self_attn."
    return (
        f"{prefix}q_proj.weight",  # [heads·hd, d]
        f"{prefix}k_proj.weight",  # [key heads·hd, d]
        f"{prefix}q_norm.weight",  # [heads·hd]: over every head's query at once
        f"{prefix}k_norm.weight",  # [key heads·hd]
    )


def _olmo2_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    if config.get("attention_bias"):
        raise UserError(
            "its query/key projections have biases (attention_bias), which OLMo 2's norm over "
            "all heads is not played with; play a checkpoint without them"
        )
    shape = _llama_shape(config)
    tensors = read(list(_olmo2_attention_tensors(config, layer)))
    prefix = f"layers.{layer}.self_attn."
    attention = _self_attn_query_keys(shape, heads, tensors, f"layers.{layer}.")
    hd, group = shape.head_dim, shape.heads // shape.key_heads
    key_heads = played_key_heads(heads, group)
    query_norm, key_norm = tensors[f"{prefix}q_norm.weight"], tensors[f"{prefix}k_norm.weight"]
    return dict(
        **attention,
        norm="none",  # the stream as it is: ones and zeros keep the norm's fields a no-op
        ln_weight=torch.ones(shape.d_model),
        ln_bias=torch.zeros(shape.d_model),
        ln_eps=0.0,
        scale=1 / math.sqrt(hd),
        query_norm=query_norm[head_rows(heads, hd)].view(len(heads), 1, hd),
        key_norm=key_norm[head_rows(key_heads, hd)].view(len(key_heads), 1, hd),
        query_key_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        every_query_weight=tensors[f"{prefix}q_proj.weight"].T.contiguous(),  # [d, heads·hd]
        every_key_weight=tensors[f"{prefix}k_proj.weight"].T.contiguous(),
    )


# Its blocks normalise their updates rather than their inputs, so each update is bounded
# whatever the stream's scale, and residual.py reaches a deeper layer as in a pre-LN model.
OLMO2 = replace(
    LLAMA,
    model_types=("olmo2",),
    example="allenai/OLMo-2-0425-1B",
    attention_tensors=_olmo2_attention_tensors,
    attention=_olmo2_attention,
)


# --- mixtral, smollm3, granite: llama's attention, something else around it -----------------


def _mixtral_modules(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mixtral's checkpoints keep each expert's w1, w3 [I, d] and w2 [d, I] under
    block_sparse_moe; transformers' MixtralSparseMoeBlock (`mlp`) holds them stacked:
    experts.gate_up_proj [E, 2·I, d] (w1 then w3, expert by expert) and experts.down_proj
    [E, d, I], as its own conversion_mapping loads them. Only blocks run through transformers
    (residual.py) need this; the played layer's attention is stored as it is held."""
    expert_name = re.compile(r"(.*)block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")
    modules: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[str, dict[int, torch.Tensor]]] = {}  # block -> w -> expert -> [.]
    for name, tensor in tensors.items():
        match = expert_name.match(name)
        if match:
            block, expert, part = match[1], int(match[2]), match[3]
            experts.setdefault(block, {}).setdefault(part, {})[expert] = tensor
        else:  # the router, block_sparse_moe.gate, is the block's mlp.gate
            modules[name.replace(".block_sparse_moe.", ".mlp.")] = tensor

    for block, parts in experts.items():

        def stacked(part: str, parts=parts) -> torch.Tensor:  # [E, ., .]
            return torch.stack([parts[part][expert] for expert in sorted(parts[part])])

        modules[f"{block}mlp.experts.gate_up_proj"] = torch.cat(
            [stacked("w1"), stacked("w3")], dim=1
        )  # [E, 2·I, d]
        modules[f"{block}mlp.experts.down_proj"] = stacked("w2")  # [E, d, I]
    return modules


MIXTRAL = replace(
    LLAMA,
    model_types=("mixtral",),  # mistral's attention; the experts only matter in the blocks
    example="mistralai/Mixtral-8x7B-v0.1",
    as_modules=_mixtral_modules,
)


def _smollm3_layer_rotary(config: dict, layer: int) -> dict | None:
    # no_rope_layers[i] is 1 where layer i *uses* rotary (SmolLM3Attention.use_rope); absent,
    # SmolLM3Config leaves out every no_rope_layer_interval-th layer
    uses_rope = config.get("no_rope_layers")
    if uses_rope is None:
        interval = int(config.get("no_rope_layer_interval", 4))
        uses_rope = [int((index + 1) % interval != 0) for index in range(layer + 1)]
    return config if uses_rope[layer] else None


SMOLLM3 = replace(
    LLAMA,
    model_types=("smollm3",),
    example="HuggingFaceTB/SmolLM3-3B",
    layer_rotary=_smollm3_layer_rotary,
)


def _granite_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    attention = _llama_attention(config, read, heads, layer)
    # GraniteAttention's scaling is attention_multiplier, in place of 1/√hd
    return {**attention, "scale": float(config.get("attention_multiplier", 1.0))}


GRANITE = replace(
    LLAMA,
    model_types=("granite",),
    example="ibm-granite/granite-3.1-2b-instruct",
    attention=_granite_attention,
    # GraniteModel multiplies inputs_embeds by it, whether given or looked up
    input_multiplier=lambda config: float(config.get("embedding_multiplier", 1.0)),
)


# --- starcoder2 ----------------------------------------------------------------------------


def _starcoder2_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"layers.{layer}."
    names = [f"{prefix}input_layernorm.weight", f"{prefix}input_layernorm.bias"]  # nn.LayerNorm
    names += [f"{prefix}self_attn.q_proj.weight", f"{prefix}self_attn.k_proj.weight"]
    if config.get("use_bias", True):
        names += [f"{prefix}self_attn.q_proj.bias", f"{prefix}self_attn.k_proj.bias"]
    return tuple(names)


def _starcoder2_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _llama_shape(config)
    tensors = read(list(_starcoder2_attention_tensors(config, layer)))
    prefix = f"layers.{layer}."
    return dict(
        norm="layer",
        ln_weight=tensors[f"{prefix}input_layernorm.weight"],
        ln_bias=tensors[f"{prefix}input_layernorm.bias"],
        ln_eps=float(config.get("norm_epsilon", 1e-5)),
        **_self_attn_query_keys(shape, heads, tensors, prefix),
        scale=1 / math.sqrt(shape.head_dim),
    )


STARCODER2 = replace(
    LLAMA,
    model_types=("starcoder2",),
    example="bigcode/starcoder2-3b",
    attention_tensors=_starcoder2_attention_tensors,
    attention=_starcoder2_attention,
)


# --- phi3 (Phi-3, Phi-4-mini) --------------------------------------------------------------


def _phi3_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    return (
        f"layers.{layer}.input_layernorm.weight",  # [d]
        f"layers.{layer}.self_attn.qkv_proj.weight",  # [(heads + 2·key heads)·hd, d], no bias
    )


def _phi3_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _llama_shape(config)
    norm_weight, fused = read(list(_phi3_attention_tensors(config, layer))).values()
    # Phi3Attention splits qkv_proj's output as [all queries | all keys | all values]
    queries = shape.heads * shape.head_dim
    keys = shape.key_heads * shape.head_dim
    if tuple(fused.shape) != (queries + 2 * keys, shape.d_model):
        raise UserError(
            f"qkv_proj is {tuple(fused.shape)}, expected {(queries + 2 * keys, shape.d_model)}; "
            "the checkpoint does not match its config"
        )
    return dict(
        norm="rms",
        ln_weight=norm_weight,
        ln_bias=torch.zeros_like(norm_weight),
        ln_eps=float(config.get("rms_norm_eps", 1e-5)),
        **_grouped_query_keys(shape, heads, fused[:queries], fused[queries : queries + keys]),
        scale=1 / math.sqrt(shape.head_dim),
    )


PHI3 = replace(
    LLAMA,
    model_types=("phi3",),  # partial rotary: its rope parameters say how much, rotary_tables
    example="microsoft/Phi-4-mini-instruct",
    attention_tensors=_phi3_attention_tensors,
    attention=_phi3_attention,
)


# --- gpt_neox (Pythia) ---------------------------------------------------------------------


def _neox_shape(config: dict) -> Shape:
    names = ("hidden_size", "num_attention_heads", "num_hidden_layers")
    return _shape(config, *names, ("max_position_embeddings",))


def _neox_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"layers.{layer}."
    names = [f"{prefix}input_layernorm.weight", f"{prefix}input_layernorm.bias"]
    names.append(f"{prefix}attention.query_key_value.weight")  # [3d, d], head by head [q, k, v]
    if config.get("attention_bias", True):
        names.append(f"{prefix}attention.query_key_value.bias")
    return tuple(names)


def _neox_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _neox_shape(config)
    hd = shape.head_dim
    tensors = read(list(_neox_attention_tensors(config, layer)))
    prefix = f"layers.{layer}."
    weight = tensors[f"{prefix}attention.query_key_value.weight"]
    bias = tensors.get(f"{prefix}attention.query_key_value.bias", torch.zeros(weight.shape[0]))
    query_rows = head_rows(heads, hd, stride=3 * hd)  # head by head [q, k, v]
    rows = torch.cat([query_rows, query_rows + hd])  # each head's k follows its q
    return dict(
        norm="layer",
        ln_weight=tensors[f"{prefix}input_layernorm.weight"],
        ln_bias=tensors[f"{prefix}input_layernorm.bias"],
        ln_eps=float(config.get("layer_norm_eps", 1e-5)),
        query_key_weight=weight[rows].T.contiguous(),
        query_key_bias=bias[rows].contiguous(),
        key_of_head=tuple(range(len(heads))),
        scale=1 / math.sqrt(hd),
    )


GPT_NEOX = Family(
    model_types=("gpt_neox",),
    example="EleutherAI/pythia-160m",
    name_prefixes=("gpt_neox.",),
    position_table=None,
    block="layers.{}.",
    final_norm="final_layer_norm",
    shape=_neox_shape,
    attention_tensors=_neox_attention_tensors,
    attention=_neox_attention,
    rotary=True,
)


# --- gpt_neo -------------------------------------------------------------------------------


def _neo_shape(config: dict) -> Shape:
    return _shape(config, "hidden_size", "num_heads", "num_layers", ("max_position_embeddings",))


def _neo_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"h.{layer}."
    return (
        f"{prefix}ln_1.weight",
        f"{prefix}ln_1.bias",
        f"{prefix}attn.attention.q_proj.weight",  # [d, d], an nn.Linear without bias
        f"{prefix}attn.attention.k_proj.weight",
    )


def _neo_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    from transformers import GPTNeoConfig

    kinds = GPTNeoConfig(**{**config, "architectures": None}).attention_layers
    if kinds[layer] != "global":
        raise UserError(
            f"layer {layer} is a {kinds[layer]} attention layer, which sees only the last "
            f"{config.get('window_size')} tokens; play a global one (layer 0, or one of "
            f"{[index for index, kind in enumerate(kinds) if kind == 'global']})"
        )
    shape = _neo_shape(config)
    hd = shape.head_dim
    ln_weight, ln_bias, query_weight, key_weight = read(
        list(_neo_attention_tensors(config, layer))
    ).values()
    rows = head_rows(heads, hd)
    return dict(
        norm="layer",
        ln_weight=ln_weight,
        ln_bias=ln_bias,
        ln_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        **_linear_query_keys(query_weight, key_weight, None, None, rows, rows),
        key_of_head=tuple(range(len(heads))),
        scale=1.0,  # GPTNeoSelfAttention does not divide by √hd
    )


GPT_NEO = Family(
    model_types=("gpt_neo",),
    example="EleutherAI/gpt-neo-125m",
    name_prefixes=("transformer.",),
    position_table="wpe.weight",
    block="h.{}.",
    final_norm="ln_f",
    shape=_neo_shape,
    attention_tensors=_neo_attention_tensors,
    attention=_neo_attention,
)


# --- opt -----------------------------------------------------------------------------------


def _opt_shape(config: dict) -> Shape:
    if not config.get("do_layer_norm_before", True):
        raise UserError(
            "this OPT normalises after each attention, so its attention sees the inputs "
            "unnormalised; only the OPTs that normalise before it are supported (not opt-350m)"
        )
    if config.get("word_embed_proj_dim", config.get("hidden_size")) != config.get("hidden_size"):
        raise UserError("this OPT projects its inputs (word_embed_proj_dim); it is not supported")
    names = ("hidden_size", "num_attention_heads", "num_hidden_layers")
    return _shape(config, *names, ("max_position_embeddings",))


def _opt_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"decoder.layers.{layer}."
    names = [f"{prefix}self_attn_layer_norm.weight", f"{prefix}self_attn_layer_norm.bias"]
    names += [f"{prefix}self_attn.q_proj.weight", f"{prefix}self_attn.k_proj.weight"]
    if config.get("enable_bias", True):
        names += [f"{prefix}self_attn.q_proj.bias", f"{prefix}self_attn.k_proj.bias"]
    return tuple(names)


def _opt_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _opt_shape(config)
    hd = shape.head_dim
    tensors = read(list(_opt_attention_tensors(config, layer)))
    prefix = f"decoder.layers.{layer}."
    rows = head_rows(heads, hd)
    projections = _linear_query_keys(
        tensors[f"{prefix}self_attn.q_proj.weight"],
        tensors[f"{prefix}self_attn.k_proj.weight"],
        tensors.get(f"{prefix}self_attn.q_proj.bias"),
        tensors.get(f"{prefix}self_attn.k_proj.bias"),
        rows,
        rows,
    )
    return dict(
        norm="layer",
        ln_weight=tensors[f"{prefix}self_attn_layer_norm.weight"],
        ln_bias=tensors[f"{prefix}self_attn_layer_norm.bias"],
        ln_eps=1e-5,  # nn.LayerNorm's default, which OPTDecoderLayer keeps
        **projections,
        key_of_head=tuple(range(len(heads))),
        scale=1 / math.sqrt(hd),  # OPTAttention scales the queries by it; the same scores
    )


OPT = Family(
    model_types=("opt",),
    example="facebook/opt-125m",
    name_prefixes=("model.",),
    position_table="decoder.embed_positions.weight",
    position_offset=lambda config: 2,  # OPTLearnedPositionalEmbedding's offset
    block="decoder.layers.{}.",
    final_norm="decoder.final_layer_norm",
    shape=_opt_shape,
    attention_tensors=_opt_attention_tensors,
    attention=_opt_attention,
)


# --- bert, roberta -------------------------------------------------------------------------


def _bert_shape(config: dict) -> Shape:
    names = ("hidden_size", "num_attention_heads", "num_hidden_layers")
    shape = _shape(config, *names, ("max_position_embeddings",), positions_default=512)
    # the rows before the table's first position (RoBERTa's) hold no position of the sequence
    return replace(shape, positions=shape.positions - _bert_position_offset(config))


def _bert_position_offset(config: dict) -> int:
    # RobertaEmbeddings numbers the positions of inputs_embeds from padding_idx + 1
    return int(config.get("pad_token_id") or 0) + 1 if config.get("model_type") == "roberta" else 0


def _bert_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"encoder.layer.{layer}.attention.self."
    return (
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
        f"{prefix}query.weight",  # [d, d], an nn.Linear
        f"{prefix}query.bias",
        f"{prefix}key.weight",
        f"{prefix}key.bias",
    )


def _bert_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _bert_shape(config)
    hd = shape.head_dim
    ln_weight, ln_bias, query_weight, query_bias, key_weight, key_bias = read(
        list(_bert_attention_tensors(config, layer))
    ).values()
    rows = head_rows(heads, hd)
    return dict(
        norm="layer",
        ln_weight=ln_weight,
        ln_bias=ln_bias,
        ln_eps=float(config.get("layer_norm_eps", 1e-12)),
        **_linear_query_keys(query_weight, key_weight, query_bias, key_bias, rows, rows),
        key_of_head=tuple(range(len(heads))),
        scale=1 / math.sqrt(hd),
    )


BERT = Family(
    model_types=("bert", "roberta"),
    example="google-bert/bert-base-uncased",
    name_prefixes=("bert.", "roberta."),
    position_table="embeddings.position_embeddings.weight",
    position_offset=_bert_position_offset,
    added_row="embeddings.token_type_embeddings.weight",  # token type 0, every token's
    block="encoder.layer.{}.",
    final_norm="",  # none: post-LN, its last block ends in a norm
    shape=_bert_shape,
    attention_tensors=_bert_attention_tensors,
    attention=_bert_attention,
    causal=False,
    pre_layer_norm=False,
)


# --- gemma2 --------------------------------------------------------------------------------


def _gemma2_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    attention = _gemma_attention(config, read, heads, layer)
    # Gemma2Config's defaults; Gemma2Attention scales by query_pre_attn_scalar^-0.5
    scalar = float(config.get("query_pre_attn_scalar", 256))
    cap = config.get("attn_logit_softcapping", 50.0)
    return {**attention, "scale": scalar**-0.5, "softcap": None if cap is None else float(cap)}


GEMMA2 = replace(
    LLAMA,
    model_types=("gemma2",),
    example="google/gemma-2-2b",
    attention=_gemma2_attention,
)


# --- bloom, mpt: ALiBi ---------------------------------------------------------------------


def _bloom_shape(config: dict) -> Shape:
    d_model, heads = _int(config, "hidden_size", "n_embed"), _int(config, "n_head")
    return Shape(
        d_model=d_model,
        heads=heads,
        key_heads=heads,
        head_dim=d_model // heads,
        layers=_int(config, "n_layer"),
        # ALiBi has no table of positions: the length BLOOM was trained at
        positions=_int(config, "seq_length", default=2048),
    )


def _bloom_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"h.{layer}."
    inputs = ("word_embeddings_layernorm.weight", "word_embeddings_layernorm.bias")
    return (
        *(inputs if layer == 0 else ()),
        f"{prefix}input_layernorm.weight",
        f"{prefix}input_layernorm.bias",
        f"{prefix}self_attention.query_key_value.weight",  # [3d, d], head by head [q, k, v]
        f"{prefix}self_attention.query_key_value.bias",
    )


def _bloom_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _bloom_shape(config)
    hd = shape.head_dim
    tensors = read(list(_bloom_attention_tensors(config, layer)))
    prefix = f"h.{layer}."
    weight = tensors[f"{prefix}self_attention.query_key_value.weight"]
    bias = tensors[f"{prefix}self_attention.query_key_value.bias"]
    query_rows = head_rows(heads, hd, stride=3 * hd)  # BloomAttention._reshape: [H, 3, hd]
    rows = torch.cat([query_rows, query_rows + hd])
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    inputs = {}
    if layer == 0:  # BloomModel normalises inputs_embeds before block 0
        inputs = dict(
            input_ln_weight=tensors["word_embeddings_layernorm.weight"],
            input_ln_bias=tensors["word_embeddings_layernorm.bias"],
            input_ln_eps=eps,
        )
    return dict(
        norm="layer",
        ln_weight=tensors[f"{prefix}input_layernorm.weight"],
        ln_bias=tensors[f"{prefix}input_layernorm.bias"],
        ln_eps=eps,
        query_key_weight=weight[rows].T.contiguous(),
        query_key_bias=bias[rows].contiguous(),
        key_of_head=tuple(range(len(heads))),
        scale=1 / math.sqrt(hd),  # BloomAttention's inv_norm_factor
        **inputs,
    )


def _bloom_alibi(config: dict, tokens: int) -> torch.Tensor:
    """[heads, T]: slope_h · j, as BloomModel builds it without an attention mask."""
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    slopes = _get_alibi_slopes(_bloom_shape(config).heads, torch.device("cpu"))  # [heads]
    return slopes[:, None] * torch.arange(tokens)  # float32, as there


BLOOM = Family(
    model_types=("bloom",),
    example="bigscience/bloom-560m",
    name_prefixes=("transformer.",),
    position_table=None,
    block="h.{}.",
    final_norm="ln_f",
    shape=_bloom_shape,
    attention_tensors=_bloom_attention_tensors,
    attention=_bloom_attention,
    score_bias=_bloom_alibi,
    deeper_refused=(
        "normalises its inputs before block 0 (word_embeddings_layernorm): the stream a deeper "
        "layer sees stays bounded, and residual.py cannot steer it"
    ),
)


def _mpt_attention_config(config: dict) -> dict:
    """attn_config, refused where transformers' MptAttention would not compute what the model
    does (or what we do): one line naming the setting."""
    attention = config.get("attn_config") or {}
    attention_type = attention.get("attn_type", "multihead_attention")
    unsupported = {
        "clip_qkv": attention.get("clip_qkv"),  # clamps Q, K and V: no longer an ellipsoid
        "qk_ln": attention.get("qk_ln", False),  # a norm after the projection
        "alibi false": not attention.get("alibi", True),  # transformers adds ALiBi regardless
        f"attn_type {attention_type}": attention_type != "multihead_attention",
        "no_bias false": not config.get("no_bias", True),  # transformers loads no biases
    }
    refused = [name for name, present in unsupported.items() if present]
    if refused:
        raise UserError(
            f"this MPT sets {', '.join(refused)}, which is not supported; only MPTs with ALiBi, "
            "plain multi-head attention and no biases (as MPT-7B) are"
        )
    return attention


def _mpt_shape(config: dict) -> Shape:
    _mpt_attention_config(config)
    return _shape(config, "d_model", "n_heads", "n_layers", ("max_seq_len",))


def _mpt_attention_tensors(config: dict, layer: int) -> tuple[str, ...]:
    prefix = f"blocks.{layer}."
    return (f"{prefix}norm_1.weight", f"{prefix}attn.Wqkv.weight")  # [d], [3d, d] as [Q; K; V]


def _mpt_attention(config: dict, read: Read, heads: tuple[int, ...], layer: int) -> dict:
    shape = _mpt_shape(config)
    hd, d = shape.head_dim, shape.d_model
    norm_weight, qkv_weight = read(list(_mpt_attention_tensors(config, layer))).values()
    rows = head_rows(heads, hd)
    scale = _mpt_attention_config(config).get("softmax_scale") or 1 / math.sqrt(hd)
    return dict(
        norm="layer",
        ln_weight=norm_weight,
        ln_bias=torch.zeros_like(norm_weight),  # no_bias: MptBlock's norm_1.bias is None
        ln_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        **_linear_query_keys(qkv_weight[:d], qkv_weight[d : 2 * d], None, None, rows, rows),
        key_of_head=tuple(range(len(heads))),
        scale=float(scale),
    )


def _mpt_alibi(config: dict, tokens: int) -> torch.Tensor:
    """[heads, T]: slope_h · (j - (T - 1)), as MptModel builds it (for max_seq_len, of which
    MptAttention keeps the last T columns: the same numbers)."""
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    bias_max = _mpt_attention_config(config).get("alibi_bias_max", 8)
    return build_mpt_alibi_tensor(_mpt_shape(config).heads, tokens, bias_max)[:, 0]  # [H, T]


MPT = Family(
    model_types=("mpt",),
    example="mosaicml/mpt-7b",
    name_prefixes=("transformer.",),
    position_table=None,
    block="blocks.{}.",
    final_norm="norm_f",
    shape=_mpt_shape,
    attention_tensors=_mpt_attention_tensors,
    attention=_mpt_attention,
    score_bias=_mpt_alibi,
)


FAMILIES = (
    GPT2,
    LLAMA,
    GEMMA,
    QWEN3,
    GEMMA3,
    OLMO2,
    GPT_NEOX,
    GPT_NEO,
    OPT,
    BERT,
    MIXTRAL,
    SMOLLM3,
    GRANITE,
    STARCODER2,
    PHI3,
    GEMMA2,
    BLOOM,
    MPT,
)
SUPPORTED = tuple(model_type for family in FAMILIES for model_type in family.model_types)


def family_of(model_type: str | None, name: str) -> Family:
    """The family of a config's model_type; one line naming the supported ones otherwise."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UserError(
        f"{name} is a {model_type or 'unknown'} checkpoint, which is not supported; pass one "
        f"of the families {', '.join(SUPPORTED)}, such as {GPT2.example}"
    )


def rotary_tables(
    config: dict, head_dim: int, tokens: int, layer: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, r] of the rotary positions 0..T-1 on the first r dimensions of each head
    (r = hd but for partial rotary), as the family's rotary embedding computes them for `layer`:
    those dimensions of q become q·cos + rotate_half(q)·sin, the others stay. `config` is the
    played layer's (`Family.rotary_config`).

    The frequencies come from transformers' own reading of the config's rope parameters
    (rope_theta, and any scaling such as Llama 3's), which it standardises across versions.
    Where they differ by the kind of layer (Gemma 3: local sliding-window layers and global
    ones, each with its theta), `layer`'s kind (config.layer_types) picks them.
    """
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    parsed = AutoConfig.for_model(**config)
    rope, by_kind = parsed.rope_parameters, {}
    if "rope_type" not in rope and "rope_theta" not in rope:  # {layer kind: its parameters}
        kind = parsed.layer_types[layer]
        rope, by_kind = rope[kind], {"layer_type": kind}
    rope_type = rope.get("rope_type", "default")
    # In float32, as the reference computes them: at position 256 an angle's rounding moves a
    # score by ~1e-5 of itself, so float64 here would differ from transformers by that much.
    if rope_type == "default":  # on a share of each head's dimensions, or all of them
        dim = int(head_dim * rope.get("partial_rotary_factor", 1.0))
        inverse_frequency = 1.0 / (
            rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
        )
        attention_scaling = 1.0
    elif rope_type in ROPE_INIT_FUNCTIONS:
        inverse_frequency, attention_scaling = ROPE_INIT_FUNCTIONS[rope_type](
            parsed, None, **by_kind
        )
    else:
        raise UserError(f"rope type {rope_type} is not supported; its positions are unknown")
    angles = torch.arange(tokens).float()[:, None] * inverse_frequency.float()  # [T, hd/2]
    angles = torch.cat([angles, angles], dim=-1)  # [T, hd], as rotate_half pairs them
    return angles.cos() * attention_scaling, angles.sin() * attention_scaling
