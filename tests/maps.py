"""Exact attention maps for the tests: the scores of a head that shows a frame exactly."""

import torch


def exact_sink_scores(frames: torch.Tensor, contrast_nats: float) -> torch.Tensor:
    """Scores that show frames [..., T, T] in [0, 1] exactly in true tone: [..., T+1, T+1], 0
    above the diagonal. Token 0 is the sink at 0 and pixel (r, c), token r+1 on token c+1, sits
    at ln p, floored at -contrast_nats: the middle of its `targets.shown_range`."""
    floor = torch.tensor(-contrast_nats, dtype=frames.dtype)
    tokens = frames.shape[-1] + 1
    scores = torch.zeros(*frames.shape[:-2], tokens, tokens, dtype=frames.dtype)
    scores[..., 1:, 1:] = torch.maximum(torch.log(frames.clamp(min=0)), floor)
    return scores.tril()
