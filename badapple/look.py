"""How a run looks: frames turned into the targets a solver fits, attention maps into pictures.

A `Look` is decided by the run's settings (layout, render, contrast, blur, colormap, channels,
causal heads) and is the one place both ways go through: `aimed` and `reported` for what is
fitted and what `loss` in metrics.json is measured against (LOSS_KINDS), `judge` and `picture`
for a frame's PNG and its figures. optimize.py, survey.py and the benchmarks share it, so a
frame is judged the same way everywhere.
"""

from dataclasses import dataclass

import numpy as np
import torch

from badapple.head import HeadWeights, attention_scores, attention_weights
from badapple.layout import (
    channel_correlations,
    head_pictures,
    layout_metrics,
    layout_picture,
)
from badapple.render import colorize
from badapple.targets import Target, aimed_target, fit_loss, target_logits

# What `loss` in metrics.json measures, by render: the logit-space MSE of the scores (row-centred,
# over the causal entries) against the original's target, or against the sink target.
LOSS_KINDS = {
    "zscore": "original: logit MSE against log of the row-normalised frame",
    "sink": "sink: mean squared distance of each pixel's logit relative to the sink to the "
    "range that shows it right (targets.shown_range)",
}


@dataclass(frozen=True)
class Look:
    """How a run turns frames into targets, and attention maps into pictures."""

    layout: str  # "half" or "full"
    render: str  # "sink" or "zscore"
    contrast: float | None  # nats from white to black in the target; None: the original's
    blur: float  # gaussian sigma in pixels, 0 for none
    colormap: str | None  # matplotlib's name, for gray runs; None in colour
    channels: int  # 1 gray, 3 colour
    causal: bool = True  # False: bidirectional heads, each a channel's whole square

    def aimed(self, pictures: torch.Tensor) -> Target:
        """What the solver fits: frames [B, C, T, T] -> targets of [B, H, T', T']."""
        heads = head_pictures(pictures, self.layout, self.causal)
        return aimed_target(heads, self.render, self.contrast, self.causal)

    def reported(self, pictures: torch.Tensor) -> Target:
        """What `loss` in metrics.json is measured against (LOSS_KINDS): under sink what is
        fitted, under zscore the original's target."""
        if self.render == "sink":
            return self.aimed(pictures)
        return target_logits(head_pictures(pictures, self.layout))

    def judge(
        self, weights: HeadWeights, pictures: torch.Tensor, embeddings: torch.Tensor
    ) -> list[dict]:
        """Each frame's picture and figures, from its embeddings [B, T', d] and its target frame
        [B, C, T, T] on the weights' device: records with "pixels", the PNG's [T, T, 3] uint8,
        which the writer of the PNGs takes out."""
        reported = self.reported(pictures)
        with torch.no_grad():
            scores = attention_scores(embeddings, weights)  # [B, H, T', T']
            attention = attention_weights(scores, self.causal).cpu().numpy()
            head_losses = fit_loss(scores, reported).cpu()  # [B, H]
        targets = pictures.cpu().numpy()
        records = []
        for index, maps in enumerate(attention):
            picture, pixels = self.picture(maps)  # [C, T, T], [T, T, 3]
            record = {
                "loss": float(head_losses[index].mean()),  # LOSS_KINDS[render], mean over heads
                "loss_per_head": head_losses[index].tolist(),  # in the order of `heads`
                **layout_metrics(picture, targets[index], self.layout),
                "pixels": pixels,
            }
            if self.channels == 3:  # each channel's corr too, R G B
                record["corr_per_channel"] = channel_correlations(
                    picture, targets[index], self.layout
                )
            records.append(record)
        return records

    def picture(self, attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame's maps [H, T', T'] as its picture [C, T, T] in [0, 1] and the PNG's
        pixels [T, T, 3] uint8: the colormap's for gray, each channel its head's in colour."""
        picture = layout_picture(attention, self.layout, self.render, self.blur, self.causal)
        if self.channels == 1:
            return picture, colorize(picture[0], self.colormap)
        return picture, np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)
