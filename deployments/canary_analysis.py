"""Canary analysis: from the outcomes of two arms in one step to a decision a person can check.

Pure module (no Django). docs/decisions/0016-canary-decisions.md explains the method;
in short:

- **Promotion needs positive evidence.** A step passes only when an always-valid upper
  bound shows the canary's error rate is within the step's bar: at most `bar` x stable's
  (or at most stable's + `max_error_increase / share`, for agents whose error rates are
  too low for a ratio to ever be shown). "Not shown worse" is a hold, never a pass.
- **The bar follows the harm budget.** Advancing into a share s of users may cost the
  whole population at most (margin - 1) x stable's error rate: the bar into s is
  1 + (margin - 1) / s. With the default margin 1.25 and steps 1, 5, 25, 50 %: 6x to go
  from 1 to 5 %, 2x to 25 %, 1.5x to 50 %, 1.25x to promote (100 %).
- **Roll back on evidence of harm**: an always-valid lower bound above `rollback_ratio`
  (errors), a p95 latency shown above `max_latency_ratio` x stable's, a mean score
  shown lower by more than `max_score_drop`. The policy's rollback confidence is split
  (Bonferroni) over the steps and the metrics it judges, so a healthy canary is rolled
  back with at most 1 - rollback_confidence over its whole life.
- **Honest under repeated looks**: every bound is a confidence sequence
  (deployments/sequential.py), valid at every minute `canary_watch` looks, not only at
  a planned one.
- **A minimum that means something**: before promotion the step must hold enough
  information that a regression of `min_regression` (relative) would have been caught
  by the rollback test with probability `power`; the explanation says how many more
  outcomes per arm that needs at the current rates.
- **Sample-ratio mismatch**: when the canary's share of outcomes is shown to differ
  from its share of users by more than `srm_tolerance` (relative), the ramp holds with
  a warning: a runtime that drops reports or a routing bug makes every other conclusion
  suspect. Rollbacks still happen; a deadline never promotes a mismatched canary.
- **Every canary ends**: after `max_duration_seconds` an undecided canary ends with
  `deadline_action` (roll back by default).
- Each minute's outcomes count in exactly one step (`step_window_start`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from deployments import sequential as seq

SRM_CONFIDENCE = 0.999
# Where the latency and sample-ratio boundaries are tightest, in outcomes per arm: the
# scale of a step at a few hundred requests per minute. The boundary is flat around its
# minimum, so a tenfold miss costs little (see the decision record).
LATENCY_PLANNED_OUTCOMES = 5_000
SRM_PLANNED_OUTCOMES = 2_000
# The sample-ratio test starts once each arm expects this many outcomes in the step: below
# that the normal approximation it rests on overstates a few outcomes' surprise (a 1 %
# step at 20 requests a minute expects 3 canary outcomes in its bake time).
SRM_MIN_EXPECTED = 30


class Verdict(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class DeadlineAction(StrEnum):
    ROLLBACK = "rollback"
    PROMOTE = "promote"


@dataclass(frozen=True)
class ArmCounts:
    """Aggregated outcomes of one arm (stable or canary) over a window.

    `latency_histogram` maps sequential.latency_bin indexes to counts.
    """

    n: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_sumsq: float = 0.0
    score_count: int = 0
    score_sum: float = 0.0
    score_sumsq: float = 0.0
    latency_histogram: Mapping[int, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    @property
    def smoothed_error_rate(self) -> float:
        return seq.smoothed_rate(self.errors, self.n)

    def summary(self) -> dict[str, Any]:
        """What a decision stores about the arm (the histogram only as its size)."""
        return {
            "n": self.n,
            "errors": self.errors,
            "latency_count": self.latency_count,
            "latency_mean": self.latency_sum / self.latency_count if self.latency_count else None,
            "score_count": self.score_count,
            "score_mean": self.score_sum / self.score_count if self.score_count else None,
        }


@dataclass(frozen=True)
class Policy:
    margin: float = 1.25
    max_error_increase: float = 0.0025
    rollback_ratio: float = 1.25
    min_regression: float = 0.5
    power: float = 0.8
    promote_confidence: float = 0.95
    rollback_confidence: float = 0.99
    max_latency_ratio: float | None = 1.25
    latency_quantile: float = 0.95
    max_score_drop: float | None = None
    srm_tolerance: float = 0.2
    max_duration_seconds: float = 86_400
    deadline_action: str = DeadlineAction.ROLLBACK

    @property
    def metrics(self) -> int:
        """How many metrics the rollback tests judge (the confidence is split over them)."""
        return 1 + (self.max_latency_ratio is not None) + (self.max_score_drop is not None)


@dataclass(frozen=True)
class StepState:
    index: int  # 0-based
    count: int  # number of steps
    percent: float
    baked_seconds: float
    bake_seconds: float
    next_percent: float = 100.0  # the share a pass moves into (100 after the last step)
    elapsed_seconds: float = 0.0  # since the canary started

    @property
    def is_last(self) -> bool:
        return self.index >= self.count - 1


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    explanation: str
    inputs: dict[str, Any] = field(default_factory=dict)
    # The facts the panel and `canary --status` show, one sentence each, in order:
    # errors, minimum, latency, score, sample ratio, deadline.
    status: list[str] = field(default_factory=list)
    ended_by_deadline: bool = False
    sample_ratio_mismatch: bool = False


def step_window_start(step_started_at: dt.datetime) -> dt.datetime:
    """The first minute bucket of a step that started at `step_started_at`: that minute
    itself when the step started on it, otherwise the next one. The minute a step started
    in belongs to the step before it, whose decision may have counted it; counting it
    again would let one minute's outcomes advance two steps."""
    minute = step_started_at.replace(second=0, microsecond=0)
    return minute if minute == step_started_at else minute + dt.timedelta(minutes=1)


def pass_bar(policy: Policy, next_percent: float) -> tuple[float, float]:
    """(ratio, absolute increase) a step must be shown within to move into `next_percent`."""
    share = min(max(next_percent, 0.01), 100.0) / 100
    return 1 + (policy.margin - 1) / share, policy.max_error_increase / share


def rollback_alpha(policy: Policy, steps: int) -> float:
    """The error budget of one rollback test: the policy's, split over steps and metrics."""
    return (1 - policy.rollback_confidence) / (max(steps, 1) * policy.metrics)


def minimum_information(policy: Policy, steps: int) -> float:
    """Effective errors (information x pooled rate squared) at which a canary worse by
    `min_regression` is rolled back with probability `power`."""
    effect = 1 + policy.min_regression - policy.rollback_ratio
    return seq.planned_information(effect, rollback_alpha(policy, steps), policy.power)


# --- the decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rates:
    """The error-rate tests of one step: rollback, pass (ratio or increase), minimum."""

    rollback: bool  # shown worse than rollback_ratio
    ratio_ok: bool  # shown within the ratio bar
    increase_ok: bool  # shown within the absolute bar
    effective: float  # information x reference rate squared ("effective errors")
    minimum: float  # effective errors the minimum needs
    # For explanations only (computed when asked: bisections are costly in simulations).
    lower: float = math.nan  # always-valid lower bound on the ratio (rollback test)
    upper: float = math.nan  # always-valid upper bound on the ratio (pass test)
    diff_upper: float = math.nan  # always-valid upper bound on p_canary - p_stable
    more_for_pass: float | None = None  # outcomes per arm still needed to pass (None: never)
    more_for_minimum: float = 0.0  # outcomes per arm still needed for the minimum

    @property
    def minimum_ok(self) -> bool:
        return self.effective >= self.minimum


def decide(
    stable: ArmCounts,
    canary: ArmCounts,
    policy: Policy,
    step: StepState,
    *,
    detail: bool = True,
) -> Decision:
    """The verdict for the current step, with a sentence a person can check by hand.

    `detail=False` skips the bounds and sentences of a hold (simulations call this a
    million times); the verdict is the same.
    """
    bar_ratio, bar_increase = pass_bar(policy, step.next_percent)
    alpha_rollback = rollback_alpha(policy, step.count)
    alpha_pass = 1 - policy.promote_confidence
    test = _RateTest.of(stable, canary, policy, step.count, bar_ratio, bar_increase)
    rates = test.run(detail=False)
    latency = _latency_test(stable, canary, policy, alpha_rollback, alpha_pass)
    score = _score_test(stable, canary, policy, alpha_rollback, alpha_pass)
    srm = seq.sample_ratio_mismatch(
        canary.n,
        stable.n,
        step.percent / 100,
        tolerance=policy.srm_tolerance,
        alpha=1 - SRM_CONFIDENCE,
        rho=seq.tuned_rho(SRM_PLANNED_OUTCOMES, (1 - SRM_CONFIDENCE) / 2),
    )
    srm_checked = _srm_checked(canary.n + stable.n, step.percent / 100)
    mismatch = srm.mismatch and srm_checked
    remaining = policy.max_duration_seconds - step.elapsed_seconds
    errors_pass = rates.increase_ok or (rates.ratio_ok and (rates.minimum_ok or not step.is_last))
    passes = (
        errors_pass
        and step.baked_seconds >= step.bake_seconds
        and (not step.is_last or (latency.ok and score.ok))
    )

    if rates.rollback or latency.harm or score.harm:
        verdict, ended_by_deadline = Verdict.ROLLBACK, False
    elif mismatch:
        verdict, ended_by_deadline = (
            (Verdict.ROLLBACK, True) if remaining <= 0 else (Verdict.HOLD, False)
        )
    elif passes and (step.is_last or remaining > 0):
        verdict = Verdict.PROMOTE if step.is_last else Verdict.ADVANCE
        ended_by_deadline = False
    elif remaining <= 0:
        promote = policy.deadline_action == DeadlineAction.PROMOTE
        verdict, ended_by_deadline = (Verdict.PROMOTE if promote else Verdict.ROLLBACK), True
    else:
        verdict, ended_by_deadline = Verdict.HOLD, False
    if not detail and verdict == Verdict.HOLD:
        return Decision(verdict, "", sample_ratio_mismatch=mismatch)

    rates = test.run(detail=True)
    where = f"step {step.index + 1} of {step.count} ({_percent(step.percent)})"
    observed = (
        f"canary {_rate(canary)} vs stable {_rate(stable)} errors over "
        f"{canary.n:,}/{stable.n:,} outcomes"
    )
    inputs: dict[str, Any] = {
        "stable": stable.summary(),
        "canary": canary.summary(),
        "policy": _policy_inputs(policy),
        "step": {
            "index": step.index,
            "count": step.count,
            "percent": step.percent,
            "next_percent": step.next_percent,
            "baked_seconds": step.baked_seconds,
            "bake_seconds": step.bake_seconds,
            "elapsed_seconds": step.elapsed_seconds,
        },
        "bar": {"ratio": bar_ratio, "increase": bar_increase},
        "alpha": {"rollback": alpha_rollback, "pass": alpha_pass},
        "errors": _finite(
            {
                "ratio_lower": rates.lower,
                "ratio_upper": rates.upper,
                "increase_upper": rates.diff_upper,
                "effective_errors": rates.effective,
                "minimum_effective_errors": rates.minimum,
                "more_for_pass": rates.more_for_pass,
                "more_for_minimum": rates.more_for_minimum,
            }
        ),
        "latency": latency.inputs,
        "score": score.inputs,
        "sample_ratio": {
            "observed_share": srm.observed_share,
            "expected_share": srm.expected_share,
            "mismatch": mismatch,
            "direction": srm.direction if mismatch else "",
        },
        "remaining_seconds": remaining,
    }
    status = [
        _errors_status(rates, policy, bar_ratio, bar_increase, step),
        *([_minimum_status(rates, policy)] if step.is_last else []),
        *([latency.status] if latency.status else []),
        *([score.status] if score.status else []),
        _srm_status(srm, mismatch, srm_checked),
        _deadline_status(remaining, policy),
    ]
    inputs["status"] = status  # stored with the decision: what the panel showed then
    missing = _missing_for_pass(rates, latency, score, step, bar_ratio, bar_increase)
    rollback_confidence = f"{_confidence(policy.rollback_confidence)} confidence"
    maximum = _duration(policy.max_duration_seconds)

    if verdict == Verdict.ROLLBACK and not ended_by_deadline:
        if rates.rollback:
            text = (
                f"At {where}, {observed}; the canary is worse than {policy.rollback_ratio:g}x "
                f"stable with {rollback_confidence} (its error rate is at least "
                f"{rates.lower:.2f}x stable's): rolled back."
            )
        else:
            harm = latency.harm or score.harm
            text = f"At {where}, {harm} with {rollback_confidence}: rolled back."
    elif ended_by_deadline and mismatch:
        text = (
            f"At {where}, the canary reached its maximum duration of {maximum} with a "
            f"sample-ratio mismatch ({_srm_text(srm)}); a mismatched canary is never "
            "promoted: rolled back."
        )
    elif mismatch:
        text = (
            f"Holding at {where}: sample-ratio mismatch, {_srm_text(srm)}. Reports are "
            "missing or doubled, or routing is broken; every other conclusion is suspect "
            "until that is fixed."
        )
    elif ended_by_deadline:
        action = "promoted" if verdict == Verdict.PROMOTE else "rolled back"
        text = (
            f"At {where}, {observed}; the canary reached its maximum duration of {maximum} "
            f"undecided ({missing[0] if missing else 'the last step was not reached'}): "
            f"{action}, as the policy says."
        )
    elif verdict in (Verdict.ADVANCE, Verdict.PROMOTE):
        shown = _pass_evidence(rates, bar_ratio, bar_increase, policy)
        extras = "".join(f"; {text}" for text in (latency.evidence, score.evidence) if text)
        action = "promoted" if step.is_last else f"advanced to {_percent(step.next_percent)}"
        text = (
            f"At {where}, {observed}; {shown}{extras}, after baking "
            f"{_duration(step.baked_seconds)}: {action}."
        )
    else:
        text = f"Holding at {where}: {observed}; {'; '.join(missing)}."
    return Decision(
        verdict,
        text,
        inputs,
        status,
        ended_by_deadline=ended_by_deadline,
        sample_ratio_mismatch=mismatch,
    )


def _policy_inputs(policy: Policy) -> dict[str, Any]:
    return {
        name: getattr(policy, name)
        for name in (
            "margin",
            "max_error_increase",
            "rollback_ratio",
            "min_regression",
            "power",
            "promote_confidence",
            "rollback_confidence",
            "max_latency_ratio",
            "latency_quantile",
            "max_score_drop",
            "srm_tolerance",
            "max_duration_seconds",
            "deadline_action",
        )
    }


@dataclass(frozen=True)
class _RateTest:
    """One step's error-rate tests, parametrised once (rho, alpha, bars)."""

    counts: tuple[float, float, float, float]  # canary n, errors, stable n, errors
    rollback_ratio: float
    bar_ratio: float
    bar_increase: float
    alpha_rollback: float
    alpha_pass: float
    minimum: float
    rho_rollback: float
    rho_ratio: float
    rho_increase: float

    @classmethod
    def of(
        cls,
        stable: ArmCounts,
        canary: ArmCounts,
        policy: Policy,
        steps: int,
        bar_ratio: float,
        bar_increase: float,
    ) -> _RateTest:
        alpha_rollback = rollback_alpha(policy, steps)
        alpha_pass = 1 - policy.promote_confidence
        # rho is tuned in "effective errors" (information x rate squared), which depend on
        # the policy alone; dividing by the larger arm's rate squared converts them to
        # information (a plug-in, like the variances; see the decision record). The larger
        # rate, because it dominates the variance: a zero-error stable arm must not make
        # fifteen canary errors look like a twentieth of one.
        scale = _reference_rate(canary.n, canary.errors, stable.n, stable.errors) ** 2
        minimum = minimum_information(policy, steps)
        ratio_plan = seq.planned_information(bar_ratio - 1, alpha_pass, policy.power)
        increase_plan = seq.planned_information(bar_increase, alpha_pass, policy.power)
        return cls(
            counts=(canary.n, canary.errors, stable.n, stable.errors),
            rollback_ratio=policy.rollback_ratio,
            bar_ratio=bar_ratio,
            bar_increase=bar_increase,
            alpha_rollback=alpha_rollback,
            alpha_pass=alpha_pass,
            minimum=minimum,
            rho_rollback=seq.tuned_rho(minimum, alpha_rollback) / scale,
            rho_ratio=seq.tuned_rho(ratio_plan, alpha_pass) / scale,
            rho_increase=seq.tuned_rho(increase_plan, alpha_pass) if bar_increase > 0 else 1.0,
        )

    def outcome(self, k: float = 1.0) -> tuple[bool, bool, bool, float]:
        """(rollback, ratio ok, increase ok, effective errors) with every count x k.

        Each test is one comparison: z(ratio) falls as the ratio grows, so "the upper
        bound is below the bar" is "z at the bar is below minus the boundary", read at
        the information of the ratio-1 contrast as sequential.ratio_bounds does."""
        nc, ec, ns, es = (value * k for value in self.counts)
        difference = seq.rate_contrast(nc, ec, ns, es, 1.0)
        information = difference.information
        if information <= 0:
            return False, False, False, 0.0
        rollback = seq.rate_contrast(nc, ec, ns, es, self.rollback_ratio).z
        ratio = seq.rate_contrast(nc, ec, ns, es, self.bar_ratio).z
        increase_ok = False
        if self.bar_increase > 0:
            width = seq.boundary(information, self.alpha_pass, self.rho_increase)
            increase_ok = difference.z + width < self.bar_increase * math.sqrt(information)
        return (
            rollback >= seq.boundary(information, self.alpha_rollback, self.rho_rollback),
            -ratio >= seq.boundary(information, self.alpha_pass, self.rho_ratio),
            increase_ok,
            information * _reference_rate(nc, ec, ns, es) ** 2,
        )

    def run(self, *, detail: bool) -> _Rates:
        rollback, ratio_ok, increase_ok, effective = self.outcome()
        if not detail:
            return _Rates(rollback, ratio_ok, increase_ok, effective, self.minimum)
        nc, ec, ns, es = (int(value) for value in self.counts)
        lower, _ = seq.ratio_bounds(
            nc, ec, ns, es, alpha=self.alpha_rollback, rho=self.rho_rollback
        )
        _, upper = seq.ratio_bounds(nc, ec, ns, es, alpha=self.alpha_pass, rho=self.rho_ratio)
        difference = seq.rate_contrast(nc, ec, ns, es, 1.0)
        diff_upper = math.inf
        if difference.information > 0:
            width = seq.boundary(difference.information, self.alpha_pass, self.rho_increase)
            diff_upper = (difference.z + width) / math.sqrt(difference.information)
        more_for_pass = _more_outcomes(nc, ns, lambda k: any(self.outcome(k)[1:3]))
        more_for_minimum = 0.0
        if effective < self.minimum:
            per_arm = max(nc, ns, 1)
            more_for_minimum = (
                per_arm * (self.minimum / effective - 1) if effective > 0 else math.inf
            )
        return _Rates(
            rollback,
            ratio_ok,
            increase_ok,
            effective,
            self.minimum,
            lower,
            upper,
            diff_upper,
            more_for_pass,
            more_for_minimum,
        )


def _reference_rate(
    canary_n: float, canary_errors: float, stable_n: float, stable_errors: float
) -> float:
    """The rate that converts information to effective errors: the larger smoothed one."""
    return max(
        seq.smoothed_rate(canary_errors, canary_n), seq.smoothed_rate(stable_errors, stable_n)
    )


def _more_outcomes(canary_n: int, stable_n: int, passes: Callable[[float], bool]) -> float | None:
    """Outcomes per arm still needed for `passes` if the current rates held (None if no
    amount of data at these rates passes; 0 if it passes now)."""
    if canary_n == 0 or stable_n == 0:
        return None
    if passes(1.0):
        return 0.0
    high = 2.0
    while not passes(high):
        high *= 2
        if high > 2**20:
            return None
    low = high / 2
    for _ in range(30):
        middle = (low + high) / 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return (high - 1) * max(canary_n, stable_n)


@dataclass(frozen=True)
class _MetricTest:
    harm: str = ""  # a rollback reason, if the data shows harm
    evidence: str = ""  # what the pass shows, if it passes
    missing: str = ""  # why it does not pass yet (at the last step)
    status: str = ""
    ok: bool = True  # passes (or is not judged)
    inputs: dict[str, Any] = field(default_factory=dict)


def _latency_test(
    stable: ArmCounts, canary: ArmCounts, policy: Policy, alpha_rollback: float, alpha_pass: float
) -> _MetricTest:
    ratio, q = policy.max_latency_ratio, policy.latency_quantile
    if ratio is None or not (stable.latency_histogram or canary.latency_histogram):
        return _MetricTest()
    name = f"p{q * 100:g} latency"
    rho = seq.tuned_rho(LATENCY_PLANNED_OUTCOMES / (q * (1 - q)), alpha_pass / 2)
    c_low, _ = seq.quantile_bounds(canary.latency_histogram, q, alpha=alpha_rollback, rho=rho)
    _, s_high = seq.quantile_bounds(stable.latency_histogram, q, alpha=alpha_rollback, rho=rho)
    _, c_high = seq.quantile_bounds(canary.latency_histogram, q, alpha=alpha_pass, rho=rho)
    s_low, _ = seq.quantile_bounds(stable.latency_histogram, q, alpha=alpha_pass, rho=rho)
    inputs = _finite(
        {
            "canary_lower_ms": c_low,
            "canary_upper_ms": c_high,
            "stable_lower_ms": s_low,
            "stable_upper_ms": s_high,
        }
    )
    harm = ""
    if math.isfinite(s_high) and c_low > ratio * s_high:
        harm = (
            f"the canary's {name} is at least {c_low:.0f} ms and stable's at most "
            f"{s_high:.0f} ms: worse than {ratio:g}x stable"
        )
    passes = s_low > 0 and c_high <= ratio * s_low
    evidence = (
        f"{name} at most {c_high:.0f} ms vs at least {s_low:.0f} ms for stable (within {ratio:g}x)"
        if passes
        else ""
    )
    missing = (
        ""
        if passes
        else f"the {name} is not yet shown within {ratio:g}x stable's "
        f"(canary at most {_ms(c_high)}, stable at least {_ms(s_low)})"
    )
    status = (
        f"{name.capitalize()}: canary between {_ms(c_low)} and {_ms(c_high)}, stable between "
        f"{_ms(s_low)} and {_ms(s_high)}; rolls back when shown above {ratio:g}x stable's, "
        f"promotion needs it shown within {ratio:g}x."
    )
    return _MetricTest(harm, evidence, missing, status, passes, inputs)


def _score_test(
    stable: ArmCounts, canary: ArmCounts, policy: Policy, alpha_rollback: float, alpha_pass: float
) -> _MetricTest:
    drop = policy.max_score_drop
    if drop is None or not (stable.score_count or canary.score_count):
        return _MetricTest()
    arms = (
        (canary.score_count, canary.score_sum, canary.score_sumsq),
        (stable.score_count, stable.score_sum, stable.score_sumsq),
    )
    planned = seq.planned_information(max(drop, 1e-9), alpha_pass, policy.power)
    rho = seq.tuned_rho(planned, alpha_pass)
    _, upper = seq.mean_difference_bounds(*arms, alpha=alpha_rollback, rho=rho)
    lower, _ = seq.mean_difference_bounds(*arms, alpha=alpha_pass, rho=rho)
    inputs = _finite({"difference_lower": lower, "difference_upper": upper})
    harm = (
        f"the canary's mean score is lower than stable's by at least {-upper:.3g}, more than "
        f"the {drop:g} allowed"
        if upper < -drop
        else ""
    )
    passes = lower > -drop
    evidence = f"mean score at most {-lower:.3g} below stable's (within {drop:g})" if passes else ""
    missing = (
        ""
        if passes
        else f"the mean score is not yet shown within {drop:g} of stable's (the canary's may "
        f"be up to {_number(-lower)} lower)"
    )
    status = (
        f"Score: canary minus stable between {_number(lower)} and {_number(upper)}; rolls back "
        f"when shown lower by more than {drop:g}, promotion needs it shown within {drop:g}."
    )
    return _MetricTest(harm, evidence, missing, status, passes, inputs)


def _missing_for_pass(
    rates: _Rates,
    latency: _MetricTest,
    score: _MetricTest,
    step: StepState,
    bar_ratio: float,
    bar_increase: float,
) -> list[str]:
    """Why the step does not pass yet; empty when it passes."""
    missing = []
    if rates.effective <= 0:
        missing.append(
            "an arm has no outcomes in this step yet (a step counts from its first full minute)"
        )
    elif not (rates.ratio_ok or rates.increase_ok):
        missing.append(
            f"the canary's error rate may still be up to {_ratio(rates.upper)} stable's, and "
            f"{_move(step)} needs it shown within {bar_ratio:.3g}x"
            + (f" (or within {_points(bar_increase)})" if bar_increase > 0 else "")
            + _needs(rates.more_for_pass)
        )
    if step.is_last and rates.ratio_ok and not rates.increase_ok and not rates.minimum_ok:
        missing.append(
            "too few outcomes to have caught a regression of the size the policy must catch; "
            f"needs about {_count(rates.more_for_minimum)} more outcomes per arm at the current "
            "rates"
        )
    if step.is_last:
        missing.extend(text for text in (latency.missing, score.missing) if text)
    if step.baked_seconds < step.bake_seconds:
        missing.append(f"baked {_duration(step.baked_seconds)} of {_duration(step.bake_seconds)}")
    return missing


def _pass_evidence(rates: _Rates, bar_ratio: float, bar_increase: float, policy: Policy) -> str:
    confidence = f"{_confidence(policy.promote_confidence)} confidence"
    if rates.ratio_ok:
        return (
            f"with {confidence} the canary's error rate is at most {rates.upper:.2f}x stable's, "
            f"within the {bar_ratio:.3g}x allowed"
        )
    return (
        f"with {confidence} the canary's error rate is at most {_points(rates.diff_upper)} "
        f"above stable's, within the {_points(bar_increase)} allowed"
    )


# --- status sentences ----------------------------------------------------------------------


def _errors_status(
    rates: _Rates, policy: Policy, bar_ratio: float, bar_increase: float, step: StepState
) -> str:
    if rates.effective <= 0:
        return (
            "Error rate: an arm has no outcomes in this step yet (a step counts from its "
            f"first full minute); {_move(step)} needs the canary's shown within "
            f"{bar_ratio:.3g}x stable's."
        )
    increase = f" or {_points(bar_increase)}" if bar_increase > 0 else ""
    return (
        f"Error rate: the canary's is between {rates.lower:.2f}x and {_ratio(rates.upper)} "
        f"stable's; rolls back when shown above {policy.rollback_ratio:g}x, {_move(step)} "
        f"needs it shown within {bar_ratio:.3g}x{increase}{_needs(rates.more_for_pass)}."
    )


def _minimum_status(rates: _Rates, policy: Policy) -> str:
    regression = f"{1 + policy.min_regression:g}x"
    if not math.isfinite(rates.more_for_minimum):
        return (
            f"Minimum: the outcomes needed to catch a {regression} regression with "
            f"{_confidence(policy.power)} power are counted once both arms report."
        )
    if rates.more_for_minimum <= 0:
        return (
            f"Minimum: enough outcomes to catch a {regression} regression with "
            f"{_confidence(policy.power)} power."
        )
    return (
        f"Minimum: to catch a {regression} regression with {_confidence(policy.power)} power, "
        "needs "
        f"about {_count(rates.more_for_minimum)} more outcomes per arm at the current rates."
    )


def _srm_checked(total: int, share: float) -> bool:
    return total * min(share, 1 - share) >= SRM_MIN_EXPECTED


def _srm_status(srm: seq.SampleRatio, mismatch: bool, checked: bool) -> str:
    if mismatch:
        return f"Sample ratio: MISMATCH, {_srm_text(srm)}; the ramp holds."
    if not checked:
        return (
            f"Sample ratio: not checked until each arm expects {SRM_MIN_EXPECTED} outcomes "
            "in the step."
        )
    return f"Sample ratio: consistent, {_srm_text(srm)}."


def _deadline_status(remaining: float, policy: Policy) -> str:
    action = "rolled back" if policy.deadline_action == DeadlineAction.ROLLBACK else "promoted"
    if remaining <= 0:
        return f"Deadline: reached; an undecided canary is {action}."
    return f"Deadline: in {_duration(remaining)}, an undecided canary is {action}."


def _srm_text(srm: seq.SampleRatio) -> str:
    text = (
        f"the canary has {_share(srm.observed_share)} of the outcomes for "
        f"{_share(srm.expected_share)} of the users"
    )
    return f"{text} ({srm.direction})" if srm.direction else text


def _move(step: StepState) -> str:
    return "promotion" if step.is_last else f"advancing to {_percent(step.next_percent)}"


def _needs(more: float | None) -> str:
    if more is None:
        return "; at the current rates no amount of data will show that"
    if more <= 0:
        return ""
    return f"; needs about {_count(more)} more outcomes per arm at the current rates"


# --- formatting ----------------------------------------------------------------------------


def _finite(values: dict[str, float | None]) -> dict[str, float | None]:
    """JSON has no infinity: an unbounded bound is stored as null."""
    return {k: v if v is not None and math.isfinite(v) else None for k, v in values.items()}


def _rate(arm: ArmCounts) -> str:
    return _share(arm.error_rate)


def _share(value: float) -> str:
    return f"{value * 100:.1f} %"


def _points(value: float) -> str:
    """An absolute error-rate increase, in percentage points."""
    return f"{value * 100:+.2g} points" if math.isfinite(value) else "unbounded"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "any multiple of"


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if math.isfinite(value) else "unbounded"


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else ("unbounded" if value > 0 else "-unbounded")


def _count(value: float) -> str:
    if not math.isfinite(value):
        return "unboundedly many"
    rounded = float(f"{value:.2g}") if value >= 100 else math.ceil(value)
    return f"{rounded:,.0f}"


def _confidence(value: float) -> str:
    return f"{value * 100:g} %"


def _percent(value: float) -> str:
    return f"{value:g} %"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes >= 120:
        hours, rest = divmod(round(minutes), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"
