"""Always-valid tests for canary analysis: error guarantees that hold for any number of looks.

Pure module (no Django). `canary_watch` looks at a canary every minute for hours; a
fixed-sample test checked that often rejects a true null far more often than its level
says. Every test here compares a statistic with a *time-uniform* boundary instead: the
probability that the statistic ever crosses it, at any look, stays within alpha.

The boundary is the one-sided normal mixture of Robbins (1970), in the form of Howard,
Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence
sequences" (Annals of Statistics, 2021): for a statistic S with variance V under the
null, P(exists t: S_t >= u(V_t)) <= alpha with

    u(V) = sqrt(2 (V + rho) log( sqrt((V + rho) / rho) / (2 alpha) + 1 )).

We use it in standard units, z = S / sqrt(V), with V the information 1/Var of the
estimate (plug-in variances: an asymptotic confidence sequence in the sense of
Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
asymptotic confidence sequences", 2021). `rho` only decides *where* the boundary is
tightest; `tuned_rho` puts that at the information the policy plans for.

Quantiles use the same boundary on the Bernoulli sums 1{X <= q}, following Howard and
Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and
best-arm identification" (Bernoulli, 2022). The sample-ratio check follows the idea of
Lindon and Malek, "Anytime-valid inference for multinomial count data" (NeurIPS 2022),
with a tolerance band (see `sample_ratio_mismatch`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

# Where on the information axis the boundary is tightest, relative to rho: the minimum of
# boundary(x * rho, alpha, rho) lies at x of about 7 (alpha 5 %) to 15 (alpha 0.1 %).
_TUNING_GRID = [1.5**k for k in range(-10, 30)]


def smoothed_rate(errors: float, n: float) -> float:
    """The Jeffreys-smoothed error rate: never 0, so one error against none is finite."""
    return (errors + 0.5) / (n + 1)


def mean_and_variance(count: int, total: float, sumsq: float) -> tuple[float, float]:
    """Mean and sample variance from (count, sum, sum of squares); count must be > 0."""
    mean = total / count
    variance = max(sumsq / count - mean**2, 0.0) * count / max(count - 1, 1)
    return mean, variance


def boundary(information: float, alpha: float, rho: float) -> float:
    """The one-sided always-valid boundary in standard units at `information` (rho > 0)."""
    if information <= 0:
        return math.inf
    ratio = rho / information
    return math.sqrt(2 * (1 + ratio) * math.log(math.sqrt(1 + 1 / ratio) / (2 * alpha) + 1))


@functools.lru_cache(maxsize=256)
def tightest_ratio(alpha: float) -> float:
    """x = information / rho at which the boundary is lowest (found on a fine grid).

    Cached: a policy has a handful of alphas, and the analysis asks for each at every look.
    """
    best = min(_TUNING_GRID, key=lambda x: boundary(x, alpha, 1.0))
    # Refine between the grid's neighbours by golden-section search on log x.
    low, high = math.log(best / 1.5), math.log(best * 1.5)
    for _ in range(60):
        a, b = low + (high - low) * 0.382, low + (high - low) * 0.618
        if boundary(math.exp(a), alpha, 1.0) < boundary(math.exp(b), alpha, 1.0):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def tuned_rho(planned_information: float, alpha: float) -> float:
    """The rho that makes the boundary tightest at `planned_information`."""
    return max(planned_information, 1e-12) / tightest_ratio(alpha)


def best_boundary(alpha: float) -> float:
    """The lowest value the boundary takes (at the information it is tuned for)."""
    return boundary(tightest_ratio(alpha), alpha, 1.0)


def planned_information(effect: float, alpha: float, power: float) -> float:
    """Information at which an effect of `effect` (in the statistic's units) crosses the
    tuned boundary with probability about `power`."""
    if effect <= 0:
        return math.inf
    z_power = NormalDist().inv_cdf(power)
    return ((best_boundary(alpha) + z_power) / effect) ** 2


# --- error rates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateContrast:
    """z for H0 "canary error rate <= ratio x stable's": S = p_c - ratio * p_s."""

    z: float
    information: float


def rate_contrast(
    canary_n: float, canary_errors: float, stable_n: float, stable_errors: float, ratio: float
) -> RateContrast:
    """The standardised contrast; raw rates in the estimate (unbiased), Jeffreys-smoothed
    rates in the variance (never zero, so a zero-error arm does not divide by zero)."""
    if canary_n <= 0 or stable_n <= 0:
        return RateContrast(0.0, 0.0)
    pc, ps = canary_errors / canary_n, stable_errors / stable_n
    sc = smoothed_rate(canary_errors, canary_n)
    ss = smoothed_rate(stable_errors, stable_n)
    variance = sc * (1 - sc) / canary_n + ratio**2 * ss * (1 - ss) / stable_n
    return RateContrast((pc - ratio * ps) / math.sqrt(variance), 1 / variance)


def ratio_bounds(
    canary_n: int,
    canary_errors: int,
    stable_n: int,
    stable_errors: int,
    *,
    alpha: float,
    rho: float,
) -> tuple[float, float]:
    """(lower, upper) always-valid bounds on the error-rate ratio canary / stable.

    z(ratio) falls as the ratio grows (its derivative is negative for any counts), so
    each bound is found by bisection; 0 and inf mean "no bound yet".
    """

    # The boundary is read at the information of the ratio-1 contrast: the contrast's own
    # information shrinks with ratio**2, which is a change of units, not of evidence.
    limit = boundary(
        rate_contrast(canary_n, canary_errors, stable_n, stable_errors, 1.0).information,
        alpha,
        rho,
    )

    def excess(ratio: float, sign: int) -> float:
        c = rate_contrast(canary_n, canary_errors, stable_n, stable_errors, ratio)
        return sign * c.z - limit

    def solve(sign: int) -> float:
        low, high = 0.0, 1000.0
        if sign > 0 and excess(low, 1) < 0:
            return 0.0
        if sign < 0 and excess(high, -1) < 0:
            return math.inf
        for _ in range(60):
            middle = (low + high) / 2
            inside = excess(middle, sign) >= 0
            if (sign > 0) == inside:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    return solve(1), solve(-1)


# --- quantiles from latency histograms -----------------------------------------------------

# Latency histograms: bin 0 holds answers under 1 ms, bin b >= 1 holds [G^(b-1), G^b) ms.
# 5 % wide bins keep a p95 comparison within a few per cent of the exact one while a
# minute of one arm's outcomes touches a few dozen bins.
BIN_GROWTH = 1.05


def latency_bin(latency_ms: float) -> int:
    if latency_ms < 1:
        return 0
    return 1 + int(math.log(latency_ms) / math.log(BIN_GROWTH))


def bin_edges(index: int) -> tuple[float, float]:
    if index <= 0:
        return 0.0, 1.0
    return BIN_GROWTH ** (index - 1), BIN_GROWTH**index


def quantile_bounds(
    histogram: Mapping[int, int], quantile: float, *, alpha: float, rho: float
) -> tuple[float, float]:
    """(lower, upper) always-valid bounds on the `quantile` of the histogram's distribution,
    each alpha/2, at bin edges on the safe side (lower edge, upper edge)."""
    n = sum(histogram.values())
    if n == 0:
        return 0.0, math.inf
    information = n / (quantile * (1 - quantile))
    margin = boundary(information, alpha / 2, rho) * math.sqrt(quantile * (1 - quantile) / n)
    low_level, high_level = quantile - margin, quantile + margin
    lower = 0.0 if low_level <= 0 else _value_at(histogram, n, low_level, upper=False)
    upper = math.inf if high_level >= 1 else _value_at(histogram, n, high_level, upper=True)
    return lower, upper


def _value_at(histogram: Mapping[int, int], n: int, level: float, *, upper: bool) -> float:
    rank = level * n
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            low, high = bin_edges(index)
            return high if upper else low
    return math.inf if upper else bin_edges(max(histogram))[0]


# --- means (quality scores) ----------------------------------------------------------------


def mean_difference_bounds(
    canary: tuple[int, float, float],
    stable: tuple[int, float, float],
    *,
    alpha: float,
    rho: float,
) -> tuple[float, float]:
    """(lower, upper) always-valid bounds on mean(canary) - mean(stable), from
    (count, sum, sum of squares) per arm (Welch variance)."""
    (nc, sc, qc), (ns, ss, qs) = canary, stable
    if nc < 2 or ns < 2:
        return -math.inf, math.inf
    mc, vc = mean_and_variance(nc, sc, qc)
    ms, vs = mean_and_variance(ns, ss, qs)
    variance = vc / nc + vs / ns
    if variance <= 0:
        return mc - ms, mc - ms
    width = boundary(1 / variance, alpha, rho) * math.sqrt(variance)
    return mc - ms - width, mc - ms + width


# --- sample-ratio mismatch -----------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatio:
    observed_share: float
    expected_share: float
    mismatch: bool
    direction: str  # "", "too few canary outcomes", "too many canary outcomes"


def sample_ratio_mismatch(
    canary_n: int,
    stable_n: int,
    expected_share: float,
    *,
    tolerance: float,
    alpha: float,
    rho: float,
) -> SampleRatio:
    """Is the canary's share of outcomes outside expected_share x (1 +- tolerance)?

    The tolerance is there because users, not requests, are routed: the share of
    requests from the users in the canary differs from the share of users by chance
    (about 1/sqrt(users in the canary), relative) and by how active they are. A missing
    or doubled report stream, or a routing bug, moves the share by much more.
    """
    total = canary_n + stable_n
    if total == 0:
        return SampleRatio(0.0, expected_share, False, "")
    observed = canary_n / total
    sd = math.sqrt(expected_share * (1 - expected_share) / total)
    limit = boundary(total, alpha / 2, rho)
    high = (observed - expected_share * (1 + tolerance)) / sd
    low = (observed - expected_share * (1 - tolerance)) / sd
    if high >= limit:
        return SampleRatio(observed, expected_share, True, "too many canary outcomes")
    if low <= -limit:
        return SampleRatio(observed, expected_share, True, "too few canary outcomes")
    return SampleRatio(observed, expected_share, False, "")
