"""Canary analysis: from outcome counts of two arms to a decision with an explanation.

Pure module (no Django). docs/decisions/0008-canary-statistics.md explains the method:

- Nothing is decided before each arm has `min_outcomes` outcomes in the current step:
  too little data is never a pass, the step holds and says so.
- Error rates are smoothed with the Jeffreys prior, (errors + 0.5) / (n + 1), so a
  stable arm with zero errors does not make a single canary error look infinitely worse.
- Roll back when a one-sided z-test says the canary's error rate is above
  `rollback_ratio` x the stable's with `rollback_confidence` (default 1.5x, 99 %).
- Hold while the canary is significantly above `promote_ratio` x stable (default 1.1x,
  95 %), i.e. probably worse but not clearly worse enough to roll back.
- Optionally roll back on a drop of the mean score or a rise of the mean latency,
  with the same kind of one-sided test.
- Otherwise the step passes once it has baked `bake_seconds`: advance, or promote
  after the last step.
- Each minute's outcomes count in exactly one step: outcomes are stored per minute, and
  a step's window starts at the first full minute of the step (`step_window_start`).
  The minute a step started in belongs to the step before it, whose decision may have
  counted it; counting it again would let one minute's outcomes advance two steps.

Testing against a margin (1.5x, not 1x) is what keeps repeated checks honest: a
healthy canary's statistic drifts away from the rollback threshold as data grows, so
looking every minute does not accumulate false rollbacks (the simulation test checks
the rate across 200 healthy rollouts).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any

from deployments.sequential import mean_and_variance, smoothed_rate


class Verdict(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class ArmCounts:
    """Aggregated outcomes of one arm (stable or canary) over a window."""

    n: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_sumsq: float = 0.0
    score_count: int = 0
    score_sum: float = 0.0
    score_sumsq: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    @property
    def smoothed_error_rate(self) -> float:
        return smoothed_rate(self.errors, self.n)


@dataclass(frozen=True)
class Policy:
    min_outcomes: int = 200
    rollback_ratio: float = 1.5
    promote_ratio: float = 1.1
    rollback_confidence: float = 0.99
    promote_confidence: float = 0.95
    max_score_drop: float | None = None
    max_latency_ratio: float | None = None


@dataclass(frozen=True)
class StepState:
    index: int  # 0-based
    count: int  # number of steps
    percent: float
    baked_seconds: float
    bake_seconds: float

    @property
    def is_last(self) -> bool:
        return self.index >= self.count - 1


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    explanation: str
    inputs: dict[str, Any] = field(default_factory=dict)


def step_window_start(step_started_at: dt.datetime) -> dt.datetime:
    """The first minute bucket of a step that started at `step_started_at`: that minute
    itself when the step started on it, otherwise the next one (see the module doc)."""
    minute = step_started_at.replace(second=0, microsecond=0)
    return minute if minute == step_started_at else minute + dt.timedelta(minutes=1)


def decide(stable: ArmCounts, canary: ArmCounts, policy: Policy, step: StepState) -> Decision:
    """The verdict for the current step, with a sentence a person can check by hand."""
    inputs: dict[str, Any] = {
        "stable": asdict(stable),
        "canary": asdict(canary),
        "policy": asdict(policy),
        "step": asdict(step),
    }
    where = f"step {step.index + 1} of {step.count} ({_percent(step.percent)})"

    if canary.n < policy.min_outcomes or stable.n < policy.min_outcomes:
        return Decision(
            Verdict.HOLD,
            f"Holding at {where}: this step has {canary.n} canary and {stable.n} stable "
            f"outcomes, and each arm needs {policy.min_outcomes}; too little data is never a "
            "pass.",
            inputs,
        )

    rates = (
        f"canary {_rate(canary)} vs stable {_rate(stable)}"
        f" (smoothed {canary.smoothed_error_rate:.2%} vs {stable.smoothed_error_rate:.2%})"
    )
    z_rollback = _ratio_z(canary, stable, policy.rollback_ratio)
    z_rollback_limit = _z(policy.rollback_confidence)
    inputs.update(z_rollback=z_rollback, z_rollback_limit=z_rollback_limit)
    if z_rollback > z_rollback_limit:
        return Decision(
            Verdict.ROLLBACK,
            f"Rolling back at {where}: error rate {rates} is clearly worse than "
            f"{policy.rollback_ratio:g}x stable (z = {z_rollback:.2f} > {z_rollback_limit:.2f}, "
            f"{policy.rollback_confidence:.0%} one-sided).",
            inputs,
        )

    for check in (_score_check, _latency_check):
        reason = check(stable, canary, policy, inputs)
        if reason:
            return Decision(Verdict.ROLLBACK, f"Rolling back at {where}: {reason}", inputs)

    z_promote = _ratio_z(canary, stable, policy.promote_ratio)
    z_promote_limit = _z(policy.promote_confidence)
    inputs.update(z_promote=z_promote, z_promote_limit=z_promote_limit)
    if z_promote > z_promote_limit:
        return Decision(
            Verdict.HOLD,
            f"Holding at {where}: error rate {rates} is probably above {policy.promote_ratio:g}x "
            f"stable (z = {z_promote:.2f} > {z_promote_limit:.2f}) but not clearly above "
            f"{policy.rollback_ratio:g}x; collecting more outcomes.",
            inputs,
        )

    if step.baked_seconds < step.bake_seconds:
        return Decision(
            Verdict.HOLD,
            f"Holding at {where}: healthy so far ({rates}), baked "
            f"{_duration(step.baked_seconds)} of {_duration(step.bake_seconds)}.",
            inputs,
        )
    verdict = Verdict.PROMOTE if step.is_last else Verdict.ADVANCE
    action = "Promoting" if step.is_last else "Advancing"
    return Decision(
        verdict,
        f"{action} after {where}: error rate {rates} is not significantly above "
        f"{policy.promote_ratio:g}x stable "
        f"(z = {z_promote:.2f} <= {z_promote_limit:.2f}) after baking "
        f"{_duration(step.baked_seconds)}.",
        inputs,
    )


def _ratio_z(canary: ArmCounts, stable: ArmCounts, ratio: float) -> float:
    """One-sided z for H1: p_canary > ratio * p_stable, on smoothed rates."""
    pc, ps = canary.smoothed_error_rate, stable.smoothed_error_rate
    variance = pc * (1 - pc) / canary.n + ratio**2 * ps * (1 - ps) / stable.n
    return (pc - ratio * ps) / math.sqrt(variance)


def _score_check(
    stable: ArmCounts, canary: ArmCounts, policy: Policy, inputs: dict[str, Any]
) -> str | None:
    drop = policy.max_score_drop
    if drop is None or min(stable.score_count, canary.score_count) < policy.min_outcomes:
        return None
    ms, vs = mean_and_variance(stable.score_count, stable.score_sum, stable.score_sumsq)
    mc, vc = mean_and_variance(canary.score_count, canary.score_sum, canary.score_sumsq)
    se = math.sqrt(vs / stable.score_count + vc / canary.score_count) or 1e-12
    z = ((ms - mc) - drop) / se
    limit = _z(policy.rollback_confidence)
    inputs.update(z_score=z, score_means={"stable": ms, "canary": mc})
    if z > limit:
        return (
            f"mean score {mc:.3f} vs stable {ms:.3f} dropped by clearly more than {drop:g} "
            f"(z = {z:.2f} > {limit:.2f})."
        )
    return None


def _latency_check(
    stable: ArmCounts, canary: ArmCounts, policy: Policy, inputs: dict[str, Any]
) -> str | None:
    ratio = policy.max_latency_ratio
    if ratio is None or min(stable.latency_count, canary.latency_count) < policy.min_outcomes:
        return None
    ms, vs = mean_and_variance(stable.latency_count, stable.latency_sum, stable.latency_sumsq)
    mc, vc = mean_and_variance(canary.latency_count, canary.latency_sum, canary.latency_sumsq)
    se = math.sqrt(vc / canary.latency_count + ratio**2 * vs / stable.latency_count) or 1e-12
    z = (mc - ratio * ms) / se
    limit = _z(policy.rollback_confidence)
    inputs.update(z_latency=z, latency_means={"stable": ms, "canary": mc})
    if z > limit:
        return (
            f"mean latency {mc:.0f} ms vs stable {ms:.0f} ms is clearly above {ratio:g}x "
            f"(z = {z:.2f} > {limit:.2f})."
        )
    return None


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def _rate(arm: ArmCounts) -> str:
    return f"{arm.error_rate:.2%} ({arm.errors}/{arm.n})"


def _percent(value: float) -> str:
    return f"{value:g} %"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"
