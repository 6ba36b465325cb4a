"""The benchmarks' stand-ins for GPT-2 XL, which cannot be downloaded everywhere.

    from benchmarks.checkpoints import write_checkpoints
    paths = write_checkpoints(Path("checkpoints"))  # {"default": Path, "hard": Path}

Two GPT-2-XL-shaped one-layer checkpoints (d = 1600, 25 heads of 64, 1024 positions), saved
with transformers' save_pretrained: "default", transformers' own init, and "hard", its query and
key weights scaled by HARD_QUERY_KEY_GAIN, so its reachable logit range is much smaller. Written
by transformers and torch only: no solver code, so a benchmark of optimize.py's own run needs
nothing else of the benchmarks.
"""

from pathlib import Path

import torch

HARD_QUERY_KEY_GAIN = 0.6  # the "hard" checkpoint's Q/K weights and biases, times this
CHECKPOINTS = ("default", "hard")


def write_checkpoints(folder: Path, names: tuple[str, ...] = CHECKPOINTS) -> dict[str, Path]:
    """GPT-2-XL-shaped one-layer checkpoints, saved with transformers: "default" (its init) and
    "hard" (query and key weights scaled by HARD_QUERY_KEY_GAIN), or those of `names`."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=1, n_embd=1600, n_head=25, n_positions=1024, vocab_size=16)
    paths = {}
    for name, gain in (("default", 1.0), ("hard", HARD_QUERY_KEY_GAIN)):
        if name not in names:
            continue
        torch.manual_seed(0)
        model = GPT2Model(config)
        with torch.no_grad():
            attention = model.h[0].attn.c_attn  # [d, 3d], columns [Q | K | V]
            attention.weight[:, : 2 * config.n_embd] *= gain
            attention.bias[: 2 * config.n_embd] *= gain
        paths[name] = folder / name
        model.save_pretrained(paths[name])
    return paths
