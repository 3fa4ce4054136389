"""The always-valid tests of deployments/sequential.py, pinned by seeded simulation."""

import math
import random

import pytest

from deployments import sequential


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def test_boundary__gaussian_walk_watched_at_every_step__crosses_at_most_alpha():
    # Thousands of looks at a walk with no drift: the fixed-n 95 % line (1.645) would be
    # crossed by most walks; the time-uniform boundary by at most alpha of them.
    rng = random.Random(1)
    alpha, looks, walks = 0.05, 2_000, 400
    rho = sequential.tuned_rho(200, alpha)
    crossed = fixed_crossed = 0
    for _ in range(walks):
        total = 0.0
        hit = fixed_hit = False
        for t in range(1, looks + 1):
            total += rng.gauss(0, 1)
            z = total / math.sqrt(t)
            fixed_hit = fixed_hit or z > 1.645
            if z >= sequential.boundary(t, alpha, rho):
                hit = True
                break
        crossed += hit
        fixed_crossed += fixed_hit
    assert crossed / walks <= alpha
    assert fixed_crossed / walks > 0.3  # what the old, fixed-sample rule would have done


def test_rate_contrast__healthy_canary_watched_every_minute__false_rollbacks_within_budget():
    # An equal canary tested against "worse than 1x" (the hardest null: the truth sits on
    # it), looked at after every simulated minute for 1,000 minutes.
    rng = random.Random(2)
    alpha, minutes, rollouts, p = 0.05, 1_000, 150, 0.05
    rho = sequential.tuned_rho(sequential.planned_information(0.25 * p, alpha, 0.8), alpha)
    false_rollbacks = 0
    for _ in range(rollouts):
        nc = ec = ns = es = 0
        for _ in range(minutes):
            nc, ns = nc + 10, ns + 10
            ec += _binomial(rng, 10, p)
            es += _binomial(rng, 10, p)
            contrast = sequential.rate_contrast(nc, ec, ns, es, 1.0)
            if contrast.z >= sequential.boundary(contrast.information, alpha, rho):
                false_rollbacks += 1
                break
    assert false_rollbacks / rollouts <= alpha


def test_ratio_bounds__bracket_the_true_ratio_and_narrow_with_data():
    few = sequential.ratio_bounds(500, 50, 500, 25, alpha=0.05, rho=1_000)
    many = sequential.ratio_bounds(50_000, 5_000, 50_000, 2_500, alpha=0.05, rho=1_000)
    assert few[0] < 2.0 < few[1]
    assert many[0] < 2.0 < many[1]
    assert many[1] - many[0] < few[1] - few[0]
    assert many[0] > 1.5  # shown worse than 1.5x with this much data


def test_ratio_bounds__without_data__no_bound():
    assert sequential.ratio_bounds(0, 0, 100, 5, alpha=0.05, rho=100) == (0.0, math.inf)


def test_latency_bin__edges_contain_the_value():
    for value in (0.2, 1, 7.5, 840, 123_456, 3_600_000):
        low, high = sequential.bin_edges(sequential.latency_bin(value))
        assert low <= value < high


def _histogram(values):
    histogram: dict[int, int] = {}
    for value in values:
        index = sequential.latency_bin(value)
        histogram[index] = histogram.get(index, 0) + 1
    return histogram


def test_quantile_bounds__catch_a_p95_regression_with_an_unchanged_mean():
    rng = random.Random(3)
    stable = [rng.lognormvariate(math.log(800), 0.4) for _ in range(20_000)]
    # The canary is faster for 90 % of answers and 3x slower for 10 %: the mean barely
    # moves, the p95 doubles.
    canary = [
        rng.lognormvariate(math.log(800), 0.4) * (3.0 if rng.random() < 0.1 else 0.8)
        for _ in range(20_000)
    ]
    mean_change = (sum(canary) / len(canary)) / (sum(stable) / len(stable)) - 1
    assert abs(mean_change) < 0.05

    rho = 2_000
    canary_low, _ = sequential.quantile_bounds(_histogram(canary), 0.95, alpha=0.01, rho=rho)
    _, stable_high = sequential.quantile_bounds(_histogram(stable), 0.95, alpha=0.01, rho=rho)
    assert canary_low > 1.25 * stable_high


def test_quantile_bounds__equal_distributions__pass_a_125_percent_margin():
    rng = random.Random(4)
    one = [rng.lognormvariate(math.log(800), 0.5) for _ in range(12_000)]
    two = [rng.lognormvariate(math.log(800), 0.5) for _ in range(12_000)]
    rho = 2_000
    _, canary_high = sequential.quantile_bounds(_histogram(one), 0.95, alpha=0.05, rho=rho)
    stable_low, _ = sequential.quantile_bounds(_histogram(two), 0.95, alpha=0.05, rho=rho)
    assert canary_high <= 1.25 * stable_low


def test_quantile_bounds__too_few_samples__upper_bound_open():
    _, high = sequential.quantile_bounds({10: 20}, 0.95, alpha=0.05, rho=1_000)
    assert high == math.inf


def test_mean_difference_bounds__shows_a_score_drop():
    def arm(values):
        return len(values), sum(values), sum(v * v for v in values)

    rng = random.Random(5)
    stable = [rng.gauss(4.0, 1.0) for _ in range(5_000)]
    canary = [rng.gauss(3.7, 1.0) for _ in range(5_000)]
    low, high = sequential.mean_difference_bounds(arm(canary), arm(stable), alpha=0.01, rho=500)
    assert low < -0.3 < high
    assert high < -0.1  # shown to drop by more than 0.1


@pytest.mark.parametrize(
    ("canary_n", "stable_n", "mismatch"),
    [
        (1_000, 99_000, False),  # 1 % as routed
        (1_050, 98_950, False),  # 5 % off: inside the tolerance
        (500, 99_500, True),  # half the canary's reports missing
        (2_000, 98_000, True),  # twice the share: a routing bug
    ],
)
def test_sample_ratio_mismatch(canary_n, stable_n, mismatch):
    result = sequential.sample_ratio_mismatch(
        canary_n, stable_n, 0.01, tolerance=0.2, alpha=0.001, rho=10_000
    )
    assert result.mismatch is mismatch


def test_sample_ratio_mismatch__small_samples_never_alarm():
    result = sequential.sample_ratio_mismatch(0, 50, 0.01, tolerance=0.2, alpha=0.001, rho=1_000)
    assert not result.mismatch


def test_planned_information__grows_as_the_effect_shrinks():
    assert sequential.planned_information(0.01, 0.05, 0.8) > sequential.planned_information(
        0.02, 0.05, 0.8
    )
    assert sequential.planned_information(0, 0.05, 0.8) == math.inf
