"""Simulated rollouts through the real services: users ask, runtimes report, analysis acts.

Time is simulated: each tick is a minute in which a sample of the population asks for
its config (routed by the real runtime document), gets an answer that fails with the
arm's error rate, reports the outcome through the real validation and storage, and
canary analysis evaluates the rollout as `canary_watch` would.
"""

import datetime as dt
import random

import pytest
from django.db.models import Sum
from django.utils import timezone

from deployments.canary_analysis import Verdict
from deployments.models import (
    CanaryPolicy,
    CanaryStatus,
    OutcomeCount,
    ReleaseKind,
    ReleaseLogEntry,
    Track,
)
from deployments.services.canaries import evaluate_canary
from deployments.services.outcomes import parse_events, record_outcomes
from tests import factories
from tests.deployments.canary_helpers import document_for, report, start

POPULATION = [f"user-{i}" for i in range(20_000)]


def run_rollout(rollout, environment, error_rates, rng, requests_per_minute, max_minutes=120):
    now = rollout.step_started_at
    for _ in range(max_minutes):
        now += dt.timedelta(minutes=1)
        users = rng.sample(POPULATION, requests_per_minute)
        report(environment, rollout.agent.slug, users, error_rates, rng, at=now)
        evaluate_canary(rollout, now=now)
        rollout.refresh_from_db()
        if rollout.status != CanaryStatus.RUNNING:
            return rollout
    return rollout


# Judges quickly, so each simulated rollout ends in minutes: the statistics are pinned by
# tests/deployments/test_canary_analysis.py and bench/canary_simulation.py; these tests
# pin the loop through the real services.
QUICK = {"margin": 2.0, "rollback_ratio": 2.0, "min_regression": 1.5, "max_latency_ratio": None}


@pytest.fixture
def setup(agent, production):
    CanaryPolicy.objects.create(environment=production, bake_minutes=2, **QUICK)
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    return agent, production, v1, v2


def test_simulation__canary_five_times_worse__rolled_back_automatically(setup):
    _, production, v1, v2 = setup
    rollout = start(v2, production, steps="1,5,25,50")

    rollout = run_rollout(
        rollout, production, {"stable": 0.05, "canary": 0.25}, random.Random(3), 1000
    )

    assert rollout.status == CanaryStatus.ROLLED_BACK
    assert not rollout.ended_by_deadline
    entry = ReleaseLogEntry.objects.get(kind=ReleaseKind.CANARY_ROLLBACK)
    assert entry.actor_label == "canary analysis"
    assert "the canary is worse than 2x stable with 99 % confidence" in entry.reason
    assert production.pointers.get().stable_version == v1


def test_simulation__healthy_canary__ramps_through_every_step_and_is_promoted(setup):
    _, production, _, v2 = setup
    rollout = start(v2, production, steps="1,5,25,50")

    rollout = run_rollout(
        rollout, production, {"stable": 0.2, "canary": 0.2}, random.Random(4), 1000
    )

    assert rollout.status == CanaryStatus.PROMOTED
    verdicts = [d.verdict for d in rollout.decisions.order_by("id") if d.verdict != Verdict.HOLD]
    assert verdicts == [Verdict.ADVANCE, Verdict.ADVANCE, Verdict.ADVANCE, Verdict.PROMOTE]
    changes = ReleaseLogEntry.objects.filter(kind=ReleaseKind.CANARY_CHANGE).order_by("id")
    assert [e.details["to_percent"] for e in changes] == [5, 25, 50]
    assert {e.actor_label for e in changes} == {"canary analysis"}
    assert production.pointers.get().stable_version == v2


def test_simulation__zero_error_stable_and_one_canary_error__not_rolled_back(setup):
    # Given a stable arm that never fails, and one failed answer from the canary
    agent, production, _, v2 = setup
    rollout = start(v2, production, steps="50")
    first_minute = rollout.step_started_at + dt.timedelta(minutes=1)
    canary_user = next(
        u for u in POPULATION if document_for(production, agent.slug).for_user(u)[0] == "canary"
    )
    failed = {"event_id": "the-one", "version_id": str(v2.id), "user_id": canary_user, "ok": False}
    record_outcomes(
        agent=agent,
        environment_id=production.pk,
        events=parse_events({"events": [failed]}, now=first_minute),
    )

    # When everything else succeeds and analysis runs every minute
    rollout = run_rollout(
        rollout, production, {"stable": 0.0, "canary": 0.0}, random.Random(5), 400
    )

    # Then the single error does not roll it back: it is promoted
    errors = OutcomeCount.objects.filter(track=Track.CANARY).aggregate(e=Sum("errors"))["e"]
    assert errors == 1
    assert rollout.status == CanaryStatus.PROMOTED


def test_simulation__40_healthy_rollouts__none_rolled_back(agent, production):
    # Given a policy that decides quickly, and two versions to alternate between
    CanaryPolicy.objects.create(environment=production, bake_minutes=0, **QUICK)
    versions = [factories.create_version(agent), factories.create_version(agent)]
    factories.deploy(versions[0], production)
    rng = random.Random(200)
    rollbacks = promotions = 0

    # When 40 healthy canaries (same 20 % error rate as stable) run one after another
    now = timezone.now()
    for index in range(40):
        canary_version = versions[(index + 1) % 2]
        rollout = start(canary_version, production, steps="10,50", now=now)
        rollout = run_rollout(rollout, production, {"stable": 0.2, "canary": 0.2}, rng, 500)
        now += dt.timedelta(hours=3)  # each rollout in its own window of simulated time
        if rollout.status == CanaryStatus.ROLLED_BACK:
            rollbacks += 1
            # keep alternating: deploy it by hand so the other version is the next canary
            factories.deploy(canary_version, production)
        elif rollout.status == CanaryStatus.PROMOTED:
            promotions += 1

    # Then none was rolled back (the budget is 1 %), and all were promoted on evidence
    assert rollbacks == 0
    assert promotions == 40
