import numpy as np
import pytest

from badapple.metrics import mean_metrics, picture_metrics


def lower_square(size: int = 16) -> np.ndarray:
    target = np.zeros((size, size), dtype=np.float32)
    target[size // 2 :, : size // 4] = 1.0
    return target


def test_a_perfect_picture_scores_perfectly():
    target = lower_square()
    assert picture_metrics(target, target) == {"mae": 0.0, "iou": 1.0, "corr": pytest.approx(1.0)}


def test_the_inverted_picture_scores_worst():
    target = lower_square()
    metrics = picture_metrics(1 - target, target)
    assert metrics["iou"] == 0.0 and metrics["corr"] == pytest.approx(-1.0)


def test_only_the_lower_triangle_counts():
    target = lower_square()
    noisy_upper = target + np.triu(np.ones_like(target), 1)
    assert picture_metrics(noisy_upper, target)["mae"] == 0.0


def test_hand_checked_mae_and_iou():
    target = np.zeros((4, 4), dtype=np.float32)
    target[3, :] = 1.0  # 4 bright causal pixels out of 10
    picture = np.zeros((4, 4), dtype=np.float32)
    picture[3, :2] = 1.0  # shows 2 of them
    metrics = picture_metrics(picture, target)
    assert metrics["mae"] == pytest.approx(2 / 10)
    assert metrics["iou"] == pytest.approx(2 / 4)


def test_corr_is_undefined_on_a_black_frame_and_means_skip_it():
    black = np.zeros((8, 8), dtype=np.float32)
    metrics = picture_metrics(black + 0.1, black)
    assert metrics["corr"] is None and metrics["iou"] == 1.0
    means = mean_metrics(
        [
            {"loss": 1.0, "mae": 0.1, "iou": 1.0, "corr": None},
            {"loss": 3.0, "mae": 0.3, "iou": 0.0, "corr": 0.5},
        ]
    )
    assert means == {"loss": 2.0, "mae": pytest.approx(0.2), "iou": 0.5, "corr": 0.5}


def test_the_whole_square_counts_when_asked():
    target = lower_square()
    target[: 16 // 4, -16 // 4 :] = 1.0  # a bright corner above the diagonal
    half_frame = np.tril(target)  # what a causal map can show
    assert picture_metrics(half_frame, target)["mae"] == 0.0
    square = picture_metrics(half_frame, target, region="square")
    assert square["mae"] == pytest.approx(16 / 256) and square["iou"] < 1.0
    assert picture_metrics(target, target, region="square")["iou"] == 1.0
    with pytest.raises(ValueError, match="region"):
        picture_metrics(target, target, region="upper")
