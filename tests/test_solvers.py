import math

import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.head import attention_scores, load_head
from badapple.solvers import SolverSettings, cosine_restarts_lr, frame_generator, solve_adam
from badapple.targets import logit_space_loss, target_logits


def test_schedule_starts_at_lr_restarts_and_ends_at_lr_min():
    rates = [cosine_restarts_lr(step, 1125, 0.1, 1e-4) for step in range(1125)]
    assert rates[0] == 0.1
    assert rates[-1] == pytest.approx(1e-4)  # the original ended on a restart, at 0.1
    period = 1125 // 4  # 281
    assert rates[period] == 0.1 and rates[period - 1] == pytest.approx(1e-4)
    assert sum(rate == 0.1 for rate in rates) == 4  # four cycles, the last one 282 steps long
    assert min(rates) >= 1e-4


def test_short_phases_use_one_cycle_of_at_least_fifty_steps():
    rates = [cosine_restarts_lr(step, 60, 0.1, 0.0) for step in range(60)]
    assert rates[0] == 0.1 and rates[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # no restart
    assert cosine_restarts_lr(0, 1, 0.1, 0.0) == 0.1
    assert math.isclose(cosine_restarts_lr(30, 61, 1.0, 0.0), 0.5)


@pytest.fixture(scope="module")
def tiny_problem(tiny_checkpoint):
    weights = load_head(open_checkpoint(str(tiny_checkpoint)), (1,), size=16)
    frames = torch.zeros(3, 16, 16)
    frames[:, 8:, :6] = 1.0  # a white block in the lower-left, shifted per frame
    frames[1] = frames[1].roll(2, dims=0)
    frames[2] = frames[2].roll(4, dims=1)
    return weights, target_logits(frames)[:, None]


def test_adam_lowers_the_loss_and_returns_gpt2_inputs(tiny_problem):
    weights, targets = tiny_problem
    losses = []
    solution = solve_adam(weights, targets, [1, 2, 3], SolverSettings(steps=80), losses.append)
    assert solution.embeddings.shape == (3, 16, 64)
    assert solution.loss.shape == (3,)
    assert len(losses) == 80 // 4 + (80 - 80 // 4)
    assert solution.loss.mean() < 0.5 * losses[0]


def test_a_frames_result_does_not_depend_on_its_batch(tiny_problem):
    weights, targets = tiny_problem
    settings = SolverSettings(steps=12, seed=7)
    together = solve_adam(weights, targets, [1, 2, 3], settings, lambda loss: None)
    alone = solve_adam(weights, targets[2:], [3], settings, lambda loss: None)
    assert torch.allclose(together.embeddings[2], alone.embeddings[0], atol=1e-4)
    again = solve_adam(weights, targets, [1, 2, 3], settings, lambda loss: None)
    assert torch.equal(together.embeddings, again.embeddings)


def test_each_frame_keeps_its_own_best_start(tiny_problem):
    weights, targets = tiny_problem
    # With a vanishing learning rate the embeddings stay at their starts, so the result shows
    # which start each frame kept: it must be that frame's own lowest-loss start.
    settings = SolverSettings(steps=8, seeds=4, lr=1e-12, lr_min=0.0, seed=3)
    solution = solve_adam(weights, targets, [1, 2, 3], settings, lambda loss: None)
    chosen = []
    for index, frame in enumerate([1, 2, 3]):
        starts = torch.randn(4, 16, 64, generator=frame_generator(3, frame)) * 0.1
        losses = logit_space_loss(attention_scores(starts, weights), targets[index]).mean(-1)
        chosen.append(int(losses.argmin()))
        assert torch.allclose(solution.embeddings[index], starts[chosen[-1]], atol=1e-6)
    # The frames prefer different starts, so one choice for the whole chunk would fail above.
    assert len(set(chosen)) > 1
