"""Picture metrics: how well a rendered map shows its target, over the lower triangle only.

The original reported only its logit-space loss; these judge what a viewer sees: the gray
picture before the colormap against the target frame, both in [0, 1].
"""

import numpy as np

BRIGHT = 0.5  # a pixel above this counts as "white" for the IoU


def picture_metrics(picture: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """mae, iou of the bright regions, and Pearson corr of two [T, T] pictures.

    corr is None when either side is constant there (e.g. an all-black frame): it is undefined.
    iou is 1.0 when neither side has a bright pixel: nothing to show, nothing shown.
    """
    lower = np.tri(target.shape[-1], dtype=bool)
    shown, wanted = picture[lower].astype(np.float64), target[lower].astype(np.float64)
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
