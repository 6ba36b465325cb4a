"""Picture metrics: how well a rendered map shows its target.

The original reported only its logit-space loss; these judge what a viewer sees: the gray
picture before the colormap against the target frame, both in [0, 1]. A half-frame map shows
only the lower triangle (diagonal included) and is scored there; a full-frame map, or a
half-frame one held against the whole picture, is scored on the whole square.
"""

import numpy as np

BRIGHT = 0.5  # a pixel above this counts as "white" for the IoU
REGIONS = ("lower", "square")  # the lower triangle, diagonal included; the whole picture


def picture_metrics(
    picture: np.ndarray, target: np.ndarray, region: str = "lower"
) -> dict[str, float | None]:
    """mae, iou of the bright regions, and Pearson corr of two pictures over `region`:
    [T, T] each, or [C, T, T] (the region of every channel, scored together).

    corr is None when either side is constant there (e.g. an all-black frame): it is undefined.
    iou is 1.0 when neither side has a bright pixel: nothing to show, nothing shown.
    """
    if region not in REGIONS:
        raise ValueError(f"region {region!r}: expected one of {REGIONS}")
    tokens = target.shape[-1]
    scored = np.tri(tokens, dtype=bool) if region == "lower" else np.ones((tokens, tokens), bool)
    scored = np.broadcast_to(scored, target.shape)  # [..., T, T]
    shown, wanted = picture[scored].astype(np.float64), target[scored].astype(np.float64)
    mae = float(np.abs(shown - wanted).mean())

    shown_bright, wanted_bright = shown > BRIGHT, wanted > BRIGHT
    union = np.count_nonzero(shown_bright | wanted_bright)
    iou = float(np.count_nonzero(shown_bright & wanted_bright) / union) if union else 1.0

    shown_centred, wanted_centred = shown - shown.mean(), wanted - wanted.mean()
    norms = np.sqrt((shown_centred**2).sum() * (wanted_centred**2).sum())
    corr = float((shown_centred * wanted_centred).sum() / norms) if norms > 1e-12 else None
    return {"mae": mae, "iou": iou, "corr": corr}


def mean_metrics(records: list[dict]) -> dict[str, float | None]:
    """Means of loss, mae, iou and corr over per-frame records, skipping undefined values."""
    means = {}
    for name in ("loss", "mae", "iou", "corr"):
        values = [record[name] for record in records if record.get(name) is not None]
        means[name] = float(np.mean(values)) if values else None
    return means
