"""mllib.relative_error: errors relative to predicting zero, and their 95% intervals."""
import math

import pytest
import torch

from mllib.evaluate import mean_ci95
from mllib.relative_error import log_ratio, ratio_of_means, zero_predictor_mse
from mllib.tasks import SinusoidTasks


def test_zero_predictor_mse_is_the_mean_square_target_per_task():
    y = torch.tensor([[[1.0], [3.0]], [[0.0], [2.0]]])          # [2 tasks, 2 points, 1]
    assert zero_predictor_mse(y).tolist() == [5.0, 2.0]
    assert zero_predictor_mse(y[..., 0]).tolist() == [5.0, 2.0]


def test_zero_predictor_of_the_sinusoid_families_is_half_the_mean_square_amplitude():
    # E[A^2 sin^2] = E[A^2] / 2: (5^3 - 0.1^3) / (3 * 4.9) / 2 = 4.25 and (10^3 - 5^3) / 15 / 2 = 29.2
    near = SinusoidTasks(shots=10, query=100, seed=1).sample(2000)
    far = SinusoidTasks(shots=10, query=100, seed=2, amplitude=(5.0, 10.0)).sample(2000)
    near_mse, far_mse = float(zero_predictor_mse(near.query_y).mean()), float(zero_predictor_mse(far.query_y).mean())
    assert abs(near_mse - 4.25) < 0.2 and abs(far_mse - 29.17) < 0.8
    assert 6.4 < far_mse / near_mse < 7.4                      # "targets grow about 6.9x in variance"


def test_ratio_with_a_constant_denominator_is_the_scaled_mean():
    num = torch.tensor([1.0, 2.0, 4.0, 7.0])
    mean, ci = mean_ci95(num)
    ratio, ratio_ci = ratio_of_means(num, torch.full((4,), 2.0))
    assert math.isclose(ratio, mean / 2) and math.isclose(ratio_ci, ci / 2)


def test_ratio_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    # num and den vary together (a larger target, a larger error): the interval must carry both noises
    gen = torch.Generator().manual_seed(0)
    hits, runs = 0, 2000
    for _ in range(runs):
        den = 0.1 + 5 * torch.rand(100, generator=gen, dtype=torch.float64) ** 2
        num = 0.3 * den * (1 + 0.5 * torch.randn(100, generator=gen, dtype=torch.float64))
        ratio, ci = ratio_of_means(num, den)
        hits += abs(ratio - 0.3) <= ci
    assert 0.93 <= hits / runs <= 0.97, hits / runs


def test_log_ratio_interval_covers_the_true_growth_factor():
    gen = torch.Generator().manual_seed(1)
    hits, runs = 0, 2000
    for _ in range(runs):
        a = 6.0 + 2.0 * torch.randn(200, generator=gen, dtype=torch.float64)
        b = 2.0 + 1.0 * torch.randn(300, generator=gen, dtype=torch.float64)
        value, half = log_ratio(*mean_ci95(a), *mean_ci95(b))
        hits += abs(value - math.log(3.0)) <= half
    assert 0.93 <= hits / runs <= 0.97, hits / runs


@pytest.mark.parametrize("num, den, message", [
    ([1.0, 2.0], [1.0, 1.0, 1.0], "same tasks"),
    ([1.0], [1.0], "at least 2"),
    ([1.0, float("inf")], [1.0, 1.0], "finite"),
    ([1.0, 2.0], [0.0, 0.0], "positive mean"),
])
def test_ratio_of_means_refuses_bad_input_in_one_line(num, den, message):
    with pytest.raises(ValueError, match=message) as info:
        ratio_of_means(num, den)
    assert "\n" not in str(info.value)


def test_log_ratio_and_zero_predictor_refuse_bad_input():
    with pytest.raises(ValueError, match="positive means"):
        log_ratio(0.0, 0.1, 1.0, 0.1)
    with pytest.raises(ValueError, match="finite number"):
        log_ratio(float("nan"), 0.1, 1.0, 0.1)
    with pytest.raises(ValueError, match="TaskBatch"):
        zero_predictor_mse(torch.ones(3))
