"""deployments.canary_analysis.decide: promotion on evidence, rollback on evidence, and an end.

Pure and fast: every test builds counts by hand (or draws them from a seeded generator)
and asks the real decision.
"""

import dataclasses
import datetime as dt
import math
import random

import pytest

from deployments.canary_analysis import (
    SRM_MIN_EXPECTED,
    ArmCounts,
    DeadlineAction,
    Policy,
    StepState,
    Verdict,
    decide,
    pass_bar,
    step_window_start,
)
from deployments.sequential import latency_bin

POLICY = Policy()
FIRST = StepState(
    index=0, count=4, percent=1, baked_seconds=3600, bake_seconds=1800, next_percent=5
)
LAST = StepState(
    index=3, count=4, percent=50, baked_seconds=3600, bake_seconds=1800, next_percent=100
)


def arm(n: int, errors: int) -> ArmCounts:
    return ArmCounts(n=n, errors=errors)


# --- the bars --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_percent", "ratio", "increase"),
    [(5, 6.0, 0.05), (25, 2.0, 0.01), (50, 1.5, 0.005), (100, 1.25, 0.0025)],
)
def test_pass_bar__harm_budget_spread_over_the_next_share(next_percent, ratio, increase):
    assert pass_bar(POLICY, next_percent) == pytest.approx((ratio, increase))


# --- promotion needs positive evidence -----------------------------------------------------


def test_decide__equal_rates_on_a_small_sample__holds_never_passes():
    # 300 outcomes per arm: nothing can be shown either way, so nothing passes.
    decision = decide(arm(300, 15), arm(300, 15), POLICY, LAST)

    assert decision.verdict == Verdict.HOLD
    assert "needs about" in decision.explanation
    assert "more outcomes per arm at the current rates" in decision.explanation


def test_decide__no_outcomes_in_the_step__holds_and_says_why():
    decision = decide(ArmCounts(), arm(40, 2), POLICY, LAST)

    assert decision.verdict == Verdict.HOLD
    assert "an arm has no outcomes in this step yet" in decision.explanation
    assert "first full minute" in decision.status[0]
    assert "are counted once both arms report" in decision.status[1]


def test_decide__twice_as_bad_at_twenty_requests_a_minute__holds():
    # What the old rule promoted in 73 of 100 rollouts: 30 minutes at 20 rpm, 50 %.
    decision = decide(arm(300, 15), arm(300, 30), POLICY, LAST)

    assert decision.verdict == Verdict.HOLD
    assert "no amount of data will show that" in decision.explanation


def test_decide__equal_rates_with_enough_evidence__promotes_with_its_numbers():
    decision = decide(arm(20_000, 1000), arm(20_000, 1000), POLICY, LAST)

    assert decision.verdict == Verdict.PROMOTE
    assert decision.explanation.startswith(
        "At step 4 of 4 (50 %), canary 5.0 % vs stable 5.0 % errors over 20,000/20,000 outcomes"
    )
    upper = decision.inputs["errors"]["ratio_upper"]
    assert upper < 1.25
    assert f"at most {upper:.2f}x stable's, within the 1.25x allowed" in decision.explanation
    assert decision.explanation.endswith("promoted.")


def test_decide__shown_within_the_bar_but_below_the_minimum__holds_for_the_minimum():
    # 11,000 per arm at 5 %: the ratio is shown within 1.25x, but a 1.5x regression would
    # not yet have been caught with 80 % power.
    decision = decide(arm(11_000, 550), arm(11_000, 550), POLICY, LAST)

    assert decision.inputs["errors"]["ratio_upper"] < 1.25
    assert decision.verdict == Verdict.HOLD
    assert "regression of the size the policy must catch" in decision.explanation
    assert decide(arm(16_000, 800), arm(16_000, 800), POLICY, LAST).verdict == Verdict.PROMOTE


def test_decide__early_step__same_data_passes_the_wider_bar_only():
    # 1.2x worse on 4,000 canary outcomes: within the 6x budget of 1 -> 5 %, far from
    # shown within the 1.25x of promotion.
    stable, canary = arm(396_000, 19_800), arm(4000, 240)
    last = dataclasses.replace(LAST, percent=1)  # the same shares, at the last step

    assert decide(stable, canary, POLICY, FIRST).verdict == Verdict.ADVANCE
    assert decide(stable, canary, POLICY, last).verdict == Verdict.HOLD


def test_decide__low_error_rates__pass_on_the_absolute_increase():
    # 0.1 % errors: a ratio would need tens of thousands of errors; +0.25 points does not.
    decision = decide(arm(20_000, 20), arm(20_000, 21), POLICY, LAST)

    assert decision.verdict == Verdict.PROMOTE
    assert "points above stable's, within the +0.25 points allowed" in decision.explanation


def test_decide__no_errors_at_all__passes_on_the_absolute_increase():
    assert decide(arm(20_000, 0), arm(20_000, 0), POLICY, LAST).verdict == Verdict.PROMOTE


def test_decide__absolute_increase_off__zero_errors_never_pass():
    policy = Policy(max_error_increase=0)

    assert decide(arm(50_000, 0), arm(50_000, 0), policy, LAST).verdict == Verdict.HOLD


def test_decide__healthy_but_not_baked__holds_with_bake_time():
    step = dataclasses.replace(FIRST, baked_seconds=600)

    decision = decide(arm(396_000, 19_800), arm(4000, 200), POLICY, step)

    assert decision.verdict == Verdict.HOLD
    assert "baked 10 min of 30 min" in decision.explanation


# --- rollback on evidence --------------------------------------------------------------------


def test_decide__clearly_worse__rolls_back_with_a_sentence_to_check():
    decision = decide(arm(4000, 100), arm(4000, 400), POLICY, LAST)

    assert decision.verdict == Verdict.ROLLBACK
    lower = decision.inputs["errors"]["ratio_lower"]
    assert lower > 1.25
    assert decision.explanation == (
        "At step 4 of 4 (50 %), canary 10.0 % vs stable 2.5 % errors over 4,000/4,000 "
        "outcomes; the canary is worse than 1.25x stable with 99 % confidence (its error "
        f"rate is at least {lower:.2f}x stable's): rolled back."
    )


def test_decide__zero_error_stable_and_one_canary_error__no_rollback():
    assert decide(arm(5000, 0), arm(200, 1), POLICY, FIRST).verdict != Verdict.ROLLBACK


def test_decide__zero_error_stable_and_many_canary_errors__rolls_back():
    assert decide(arm(5000, 0), arm(300, 30), POLICY, FIRST).verdict == Verdict.ROLLBACK


@pytest.mark.parametrize("stable_errors", [20, 100, 500])
def test_decide__rollback_boundary__one_error_decides_and_matches_the_bound(stable_errors):
    # Walk the canary's errors up: the verdict flips to rollback exactly once, at the
    # first count whose lower bound (as the explanation states it) is above the ratio.
    stable = arm(10_000, stable_errors)
    verdicts = []
    for errors in range(stable_errors, 4 * stable_errors):
        decision = decide(stable, arm(10_000, errors), POLICY, FIRST)
        fast = decide(stable, arm(10_000, errors), POLICY, FIRST, detail=False)
        assert fast.verdict == decision.verdict  # the two paths agree
        rolled_back = decision.verdict == Verdict.ROLLBACK
        assert rolled_back == (decision.inputs["errors"]["ratio_lower"] > 1.25)
        verdicts.append(rolled_back)
    flip = verdicts.index(True)
    assert not any(verdicts[:flip]) and all(verdicts[flip:])


@pytest.mark.parametrize("rate", [0.01, 0.02, 0.05])
def test_decide__pass_boundary__advance_exactly_while_the_bound_is_within_the_bar(rate):
    # A 20 % step moving into 25 %: the bar is 2x (or +1 point). Walk the canary's
    # errors up from stable's rate: advance, then hold, (then roll back), never back.
    step = dataclasses.replace(FIRST, percent=20, next_percent=25)
    stable = arm(8000, round(8000 * rate))
    verdicts = []
    for canary_errors in range(round(2000 * rate), round(2000 * rate * 3) + 1):
        decision = decide(stable, arm(2000, canary_errors), POLICY, step)
        verdicts.append(decision.verdict)
        if decision.verdict != Verdict.ROLLBACK:
            bounds = decision.inputs["errors"]
            shown = bounds["ratio_upper"] < 2 or bounds["increase_upper"] < 0.01
            assert (decision.verdict == Verdict.ADVANCE) == shown
    order = [Verdict.ADVANCE, Verdict.HOLD, Verdict.ROLLBACK]
    ranks = [order.index(v) for v in verdicts]
    assert ranks == sorted(ranks) and Verdict.HOLD in verdicts


# --- honest under repeated looks --------------------------------------------------------------


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: exact, and fast for the small means of one minute.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _looks(rng, policy, step, *, rate, ratio, per_minute, minutes, stop):
    """Grow both arms minute by minute and look after each minute; the first verdict in
    `stop`, or None."""
    stable = canary = ArmCounts()
    for minute in range(minutes):
        stable = arm(stable.n + per_minute, stable.errors + _poisson(rng, per_minute * rate))
        canary = arm(
            canary.n + per_minute, canary.errors + _poisson(rng, per_minute * rate * ratio)
        )
        looked = dataclasses.replace(step, baked_seconds=60.0 * (minute + 1))
        verdict = decide(stable, canary, policy, looked, detail=False).verdict
        if verdict in stop:
            return verdict
    return None


@pytest.mark.parametrize(
    ("policy", "verdict", "minutes", "seed", "limit"),
    [
        # The worst case for false rollbacks: a canary exactly at the rollback ratio. With
        # a 90 % rollback confidence on one step and one metric, at most 10 % of such
        # canaries may ever be rolled back, however often one looks. Expected at most 30
        # of 300; the limit leaves three standard deviations of noise.
        (
            Policy(rollback_confidence=0.9, max_latency_ratio=None, min_regression=0.5),
            Verdict.ROLLBACK,
            2000,
            13,
            45,
        ),
        # A canary exactly at the promotion margin (1.25x) may be promoted in at most 5 %.
        (
            Policy(max_latency_ratio=None, max_error_increase=0),
            Verdict.PROMOTE,
            1000,
            17,
            15 + 3 * math.sqrt(300 * 0.05 * 0.95),
        ),
    ],
    ids=["rollback-at-the-rollback-ratio", "promotion-at-the-margin"],
)
def test_decide__thousands_of_looks_at_the_threshold__within_the_budget(
    policy, verdict, minutes, seed, limit
):
    step = dataclasses.replace(LAST, index=0, count=1)
    rng = random.Random(seed)
    runs = 300
    ended = sum(
        _looks(
            rng,
            policy,
            step,
            rate=0.05,
            ratio=1.25,
            per_minute=40,
            minutes=minutes,
            stop={verdict},
        )
        == verdict
        for _ in range(runs)
    )
    assert ended <= limit


def test_decide__equal_canary_watched_for_a_day__is_promoted_not_rolled_back():
    # The other side: the same looks at an equal canary end in promotion.
    policy = Policy(max_latency_ratio=None)
    step = dataclasses.replace(LAST, index=0, count=1)
    rng = random.Random(19)
    verdicts = [
        _looks(
            rng,
            policy,
            step,
            rate=0.05,
            ratio=1.0,
            per_minute=100,
            minutes=1440,
            stop={Verdict.PROMOTE, Verdict.ROLLBACK},
        )
        for _ in range(40)
    ]
    assert verdicts.count(Verdict.PROMOTE) >= 38


# --- sample-ratio mismatch --------------------------------------------------------------------


def test_decide__canary_reports_missing__holds_with_a_warning():
    # 50 % of users, 10 % of outcomes: a runtime that reports only some answers.
    decision = decide(arm(18_000, 900), arm(2000, 100), POLICY, LAST)

    assert decision.verdict == Verdict.HOLD
    assert decision.sample_ratio_mismatch
    assert "sample-ratio mismatch" in decision.explanation
    assert "too few canary outcomes" in decision.explanation
    assert any(line.startswith("Sample ratio: MISMATCH") for line in decision.status)


def test_decide__shares_within_the_tolerance__no_mismatch():
    # Users, not requests, are routed: 47 % of outcomes for 50 % of users is noise.
    decision = decide(arm(21_200, 1060), arm(18_800, 940), POLICY, LAST)

    assert not decision.sample_ratio_mismatch
    assert decision.verdict == Verdict.PROMOTE


def test_decide__mismatch_does_not_stop_a_rollback():
    decision = decide(arm(18_000, 360), arm(2000, 400), POLICY, LAST)

    assert decision.sample_ratio_mismatch
    assert decision.verdict == Verdict.ROLLBACK


def test_decide__too_few_expected_outcomes_for_the_ratio_check__not_checked():
    # A 1 % step expecting 29 canary outcomes got 90: alarming, but too few to tell.
    expected_total = SRM_MIN_EXPECTED * 100 - 100
    decision = decide(arm(expected_total - 90, 0), arm(90, 0), POLICY, FIRST)

    assert not decision.sample_ratio_mismatch
    assert any("not checked until each arm expects" in line for line in decision.status)
    # and with a few more outcomes the same share is a mismatch
    assert decide(arm(3000, 0), arm(300, 0), POLICY, FIRST).sample_ratio_mismatch


# --- every canary ends ----------------------------------------------------------------------


def test_decide__undecided_at_the_deadline__rolled_back_by_default():
    step = dataclasses.replace(LAST, elapsed_seconds=POLICY.max_duration_seconds)

    decision = decide(arm(300, 15), arm(300, 15), POLICY, step)

    assert decision.verdict == Verdict.ROLLBACK
    assert decision.ended_by_deadline
    assert "maximum duration of 24 h" in decision.explanation
    assert "rolled back, as the policy says" in decision.explanation


def test_decide__deadline_with_promote_action__promotes_even_from_an_early_step():
    policy = Policy(deadline_action=DeadlineAction.PROMOTE)
    step = dataclasses.replace(FIRST, elapsed_seconds=policy.max_duration_seconds + 60)

    decision = decide(arm(300, 15), arm(3, 1), policy, step)

    assert decision.verdict == Verdict.PROMOTE
    assert decision.ended_by_deadline


def test_decide__deadline_never_promotes_a_mismatched_canary():
    policy = Policy(deadline_action=DeadlineAction.PROMOTE)
    step = dataclasses.replace(LAST, elapsed_seconds=policy.max_duration_seconds)

    decision = decide(arm(18_000, 900), arm(2000, 100), policy, step)

    assert decision.verdict == Verdict.ROLLBACK
    assert decision.ended_by_deadline and decision.sample_ratio_mismatch


def test_decide__evidence_at_the_deadline__promotes_on_the_evidence():
    step = dataclasses.replace(LAST, elapsed_seconds=POLICY.max_duration_seconds)

    decision = decide(arm(20_000, 1000), arm(20_000, 1000), POLICY, step)

    assert decision.verdict == Verdict.PROMOTE
    assert not decision.ended_by_deadline


def test_decide__status_says_how_long_until_the_deadline():
    step = dataclasses.replace(LAST, elapsed_seconds=3600)

    status = decide(arm(300, 15), arm(300, 15), POLICY, step).status

    assert status[-1] == "Deadline: in 23 h, an undecided canary is rolled back."


# --- latency as a distribution, score with its own margin -------------------------------------


def _latencies(values: dict[float, int], errors: int = 0) -> ArmCounts:
    n = sum(values.values())
    histogram: dict[int, int] = {}
    for latency, count in values.items():
        histogram[latency_bin(latency)] = histogram.get(latency_bin(latency), 0) + count
    return ArmCounts(
        n=n,
        errors=errors,
        latency_count=n,
        latency_sum=sum(v * c for v, c in values.items()),
        latency_sumsq=sum(v * v * c for v, c in values.items()),
        latency_histogram=histogram,
    )


def test_decide__p95_regression_with_unchanged_mean__rolls_back():
    # Stable: 97 % at 100 ms, 3 % at 433 ms. Canary: 93 % at 100 ms, 7 % at 243 ms.
    # Both means are 110 ms; the canary's p95 is 2.4x stable's.
    stable = _latencies({100: 9700, 433: 300}, errors=500)
    canary = _latencies({100: 9300, 243: 700}, errors=500)
    assert canary.latency_sum / canary.n == pytest.approx(stable.latency_sum / stable.n, rel=0.01)

    decision = decide(stable, canary, POLICY, LAST)

    assert decision.verdict == Verdict.ROLLBACK
    assert "p95 latency" in decision.explanation


def test_decide__same_latency_distribution__promotes_with_latency_evidence():
    # 20,000 answers spread evenly (in log scale) from 100 to 730 ms.
    same = {100 * 1.01**i: 100 for i in range(200)}
    decision = decide(_latencies(same, errors=1000), _latencies(same, errors=1000), POLICY, LAST)

    assert decision.verdict == Verdict.PROMOTE
    assert "p95 latency at most" in decision.explanation


def test_decide__latency_reported_by_stable_only__promotion_waits_for_it():
    stable = _latencies({100: 20_000}, errors=1000)

    decision = decide(stable, arm(20_000, 1000), POLICY, LAST)

    assert decision.verdict == Verdict.HOLD
    assert "p95 latency is not yet shown" in decision.explanation


def _scores(n: int, mean: float, sd: float, errors: int) -> ArmCounts:
    return ArmCounts(
        n=n, errors=errors, score_count=n, score_sum=n * mean, score_sumsq=n * (mean**2 + sd**2)
    )


def test_decide__score_clearly_lower__rolls_back():
    policy = Policy(max_score_drop=0.05, max_latency_ratio=None)

    decision = decide(_scores(4000, 0.9, 0.1, 200), _scores(4000, 0.7, 0.1, 200), policy, LAST)

    assert decision.verdict == Verdict.ROLLBACK
    assert "mean score is lower than stable's by at least" in decision.explanation


def test_decide__score_within_its_margin__promotes():
    policy = Policy(max_score_drop=0.05, max_latency_ratio=None)

    decision = decide(
        _scores(20_000, 0.9, 0.1, 1000), _scores(20_000, 0.89, 0.1, 1000), policy, LAST
    )

    assert decision.verdict == Verdict.PROMOTE
    assert "mean score at most" in decision.explanation


# --- windows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started", "window"),
    [
        ("12:05:00.000000", "12:05"),  # started on the minute: that minute is a full one
        ("12:05:00.000001", "12:06"),
        ("12:05:30.000000", "12:06"),
        ("12:59:59.999999", "13:00"),
    ],
)
def test_step_window_start__first_full_minute_of_the_step(started, window):
    day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    moment = dt.datetime.combine(day.date(), dt.time.fromisoformat(started), tzinfo=dt.UTC)

    assert step_window_start(moment) == dt.datetime.combine(
        day.date(), dt.time.fromisoformat(window), tzinfo=dt.UTC
    )


def test_deadline_actions__the_policy_model_offers_exactly_the_analysis_values():
    from deployments.models import DeadlineAction as PolicyChoice

    assert sorted(PolicyChoice.values) == sorted(action.value for action in DeadlineAction)
