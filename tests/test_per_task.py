"""mllib.per_task: bootstrap intervals of medians, the paired median verdict, support and query curves."""
import pytest
import torch

from mllib.compare import assert_claim, paired_verdict
from mllib.models import SineMLP, params_of
from mllib.per_task import median_ci95, paired_median_verdict, support_query_curves
from mllib.sine_experiments import adaptation_curve
from mllib.tasks import SinusoidTasks


def test_median_ci95_brackets_the_median_and_ignores_one_huge_value():
    values = list(range(1, 100)) + [1e9]
    median, low, high = median_ci95(values)
    assert median == 50.5 and low < median < high < 70, (median, low, high)


def test_median_ci95_is_seeded():
    assert median_ci95([3.0, 1.0, 2.0, 7.0, 5.0], seed=3) == median_ci95([3.0, 1.0, 2.0, 7.0, 5.0], seed=3)


def test_paired_median_verdict_sees_a_consistent_difference_the_mean_test_misses():
    # b is below a by 0.1 on 59 of 60 tasks; one task where b is 1000 worse makes the mean test a tie
    a = [1.0 + 0.01 * i for i in range(60)]
    b = [x - 0.1 for x in a[:-1]] + [a[-1] + 1000.0]
    assert paired_verdict(a, b) == "tie"
    result = paired_median_verdict(a, b)
    assert result == "higher" and "median paired difference" in result.detail
    assert_claim("higher", result)


def test_paired_median_verdict_says_tie_for_noise():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(40, generator=gen)
    assert paired_median_verdict(a, a + 0.001 * torch.randn(40, generator=gen).sign() * 0) == "tie"
    assert paired_median_verdict(a, torch.randn(40, generator=gen)) == "tie"


def test_paired_median_verdict_lower():
    assert paired_median_verdict([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.5, 5.0, 7.0]) == "lower"


@pytest.mark.parametrize("a, b, message", [
    ([1.0, 2.0], [1.0, 2.0, 3.0], "same tasks"),
    ([1.0], [2.0], "at least 2"),
    ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ("abc", [1.0, 2.0], "sequence of numbers"),
])
def test_paired_median_verdict_bad_input_is_one_clear_line(a, b, message):
    with pytest.raises(ValueError, match=message) as info:
        paired_median_verdict(a, b)
    assert "\n" not in str(info.value)


def test_median_ci95_rejects_too_few_resamples():
    with pytest.raises(ValueError, match="resamples"):
        median_ci95([1.0, 2.0, 3.0], resamples=5)


def test_support_query_curves_match_adaptation_curve():
    torch.manual_seed(0)
    net = SineMLP()
    start = params_of(net)
    batch = SinusoidTasks(shots=10, query=30, seed=5).sample(6)
    support, query = support_query_curves(net, start, batch, steps=4, lr=0.01)
    assert support.shape == query.shape == (6, 5)
    torch.testing.assert_close(query, adaptation_curve(net, start, batch, steps=4, lr=0.01, per_task=True))
    # the support curve is the MSE on the support points: its step-0 value is the start's support error
    with torch.no_grad():
        first = ((net(batch.support_x[0]) - batch.support_y[0]) ** 2).mean()
    torch.testing.assert_close(support[0, 0], first)
    # plain SGD at a small rate lowers the support error it descends
    assert (support[:, 4] < support[:, 0]).all()


def test_support_query_curves_rejects_classification_tasks():
    from mllib.tasks.batch import TaskBatch
    batch = TaskBatch(torch.zeros(2, 3, 1), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, 1),
                      torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="regression"):
        support_query_curves(SineMLP(), params_of(SineMLP()), batch, steps=1, lr=0.01)
