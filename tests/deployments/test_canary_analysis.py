"""deployments.canary_analysis.decide: evidence first, then the verdict and its reasons."""

import datetime as dt
import random

import pytest

from deployments.canary_analysis import (
    ArmCounts,
    Policy,
    StepState,
    Verdict,
    decide,
    step_window_start,
)

POLICY = Policy(min_outcomes=200)
BAKED = StepState(index=0, count=4, percent=1, baked_seconds=3600, bake_seconds=1800)
LAST = StepState(index=3, count=4, percent=50, baked_seconds=3600, bake_seconds=1800)


def test_decide__too_few_canary_outcomes__holds_and_says_so():
    decision = decide(ArmCounts(5000, 250), ArmCounts(199, 190), POLICY, BAKED)

    assert decision.verdict == Verdict.HOLD
    assert "199 canary" in decision.explanation and "needs 200" in decision.explanation


def test_decide__three_times_stable_error_rate__rolls_back_with_numbers():
    decision = decide(ArmCounts(2000, 100), ArmCounts(400, 60), POLICY, BAKED)

    assert decision.verdict == Verdict.ROLLBACK
    assert "15.00% (60/400)" in decision.explanation
    assert "5.00% (100/2000)" in decision.explanation
    assert decision.inputs["z_rollback"] > decision.inputs["z_rollback_limit"]


def test_decide__zero_error_stable_and_one_canary_error__no_rollback():
    decision = decide(ArmCounts(5000, 0), ArmCounts(200, 1), POLICY, BAKED)

    assert decision.verdict != Verdict.ROLLBACK


def test_decide__zero_error_stable_and_many_canary_errors__rolls_back():
    decision = decide(ArmCounts(5000, 0), ArmCounts(300, 12), POLICY, BAKED)

    assert decision.verdict == Verdict.ROLLBACK


def test_decide__healthy_and_baked__advances_then_promotes_on_last_step():
    stable, canary = ArmCounts(5000, 250), ArmCounts(400, 19)

    assert decide(stable, canary, POLICY, BAKED).verdict == Verdict.ADVANCE
    assert decide(stable, canary, POLICY, LAST).verdict == Verdict.PROMOTE


def test_decide__healthy_but_not_baked__holds_with_bake_time():
    step = StepState(index=0, count=4, percent=1, baked_seconds=600, bake_seconds=1800)

    decision = decide(ArmCounts(5000, 250), ArmCounts(400, 19), POLICY, step)

    assert decision.verdict == Verdict.HOLD
    assert "baked 10 min of 30 min" in decision.explanation


def test_decide__somewhat_worse__holds_instead_of_deciding():
    # 1.3x: probably above 1.1x, but not clearly above 1.5x.
    decision = decide(ArmCounts(20000, 1000), ArmCounts(8000, 520), POLICY, BAKED)

    assert decision.verdict == Verdict.HOLD
    assert "probably above 1.1x" in decision.explanation


def test_decide__score_drop_policy__rolls_back_on_clear_drop():
    policy = Policy(min_outcomes=200, max_score_drop=0.05)
    stable = ArmCounts(
        1000, 50, score_count=1000, score_sum=900, score_sumsq=900 * 0.9 + 1000 * 0.01
    )
    canary = ArmCounts(400, 20, score_count=400, score_sum=280, score_sumsq=280 * 0.7 + 400 * 0.01)

    decision = decide(stable, canary, policy, BAKED)

    assert decision.verdict == Verdict.ROLLBACK
    assert "mean score" in decision.explanation


def test_decide__latency_policy__rolls_back_on_clear_rise():
    policy = Policy(min_outcomes=200, max_latency_ratio=1.5)
    stable = ArmCounts(
        1000, 50, latency_count=1000, latency_sum=1000 * 400, latency_sumsq=1000 * (400**2 + 50**2)
    )
    canary = ArmCounts(
        400, 20, latency_count=400, latency_sum=400 * 900, latency_sumsq=400 * (900**2 + 80**2)
    )

    decision = decide(stable, canary, policy, BAKED)

    assert decision.verdict == Verdict.ROLLBACK
    assert "mean latency" in decision.explanation


@pytest.mark.parametrize("rate", [0.001, 0.02, 0.1, 0.3])
def test_decide__healthy_canary_checked_every_minute__rarely_rolls_back(rate):
    # Repeated looks at growing data (the canary_watch loop): a canary as good as stable
    # must almost never be rolled back.
    rng = random.Random(rate)
    rollbacks = 0
    for _ in range(200):
        stable = canary = ArmCounts()
        for _minute in range(30):
            s_errors = sum(rng.random() < rate for _ in range(400))
            c_errors = sum(rng.random() < rate for _ in range(40))
            stable = ArmCounts(stable.n + 400, stable.errors + s_errors)
            canary = ArmCounts(canary.n + 40, canary.errors + c_errors)
            if decide(stable, canary, POLICY, BAKED).verdict == Verdict.ROLLBACK:
                rollbacks += 1
                break
    assert rollbacks / 200 < 0.05


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
