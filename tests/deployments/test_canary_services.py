"""deployments.services.canaries: one canary at a time, every change logged, sticky ramps."""

import datetime as dt
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, NotFound
from deployments.canary_analysis import Verdict
from deployments.models import (
    CanaryPolicy,
    CanaryRollout,
    CanaryStatus,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
)
from deployments.selectors import get_canary_step_totals
from deployments.services import canaries
from deployments.services.outcomes import parse_events, record_outcomes
from deployments.services.releases import deploy_version, rollback
from tests import factories
from tests.deployments.canary_helpers import OPS, document_for, start


def canary_users(environment, agent_slug, users):
    document = document_for(environment, agent_slug)
    return {user for user in users if document.for_user(user)[0] == "canary"}


@pytest.fixture
def versions(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    return v1, v2


def test_start_canary__steps__running_at_first_step_and_logged(versions, production):
    v1, v2 = versions

    rollout = start(v2, production, steps="1,5,25,50", bake_minutes=10)

    assert rollout.status == CanaryStatus.RUNNING
    assert rollout.steps == [[100, 600], [500, 600], [2500, 600], [5000, 600]]
    assert (rollout.basis_points, rollout.stable_version, rollout.canary_version) == (100, v1, v2)
    assert Pointer.objects.get(environment=production).canary == rollout
    entry = ReleaseLogEntry.objects.filter(kind=ReleaseKind.CANARY_START).get()
    assert (entry.from_version, entry.to_version, entry.actor_label) == (v1, v2, "ops")


def test_start_canary__defaults__policy_steps_1_5_25_50(versions, production):
    rollout = start(versions[1], production)

    assert [bp for bp, _ in rollout.steps] == [100, 500, 2500, 5000]


def test_start_canary__percent_with_hundredths__exact_basis_points(versions, production):
    rollout = start(versions[1], production, percent="12.34")

    assert rollout.basis_points == 1234 and rollout.percent == 12.34


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"percent": "0"}, "percent"),
        ({"percent": "100"}, "percent"),
        ({"percent": "abc"}, "percent"),
        ({"percent": "1.234"}, "percent"),
        ({"steps": "5,1"}, "steps"),
        ({"steps": "1,,5"}, "steps"),
        ({"reason": " "}, "reason"),
    ],
)
def test_start_canary__bad_input__field_error_and_nothing_written(
    versions, production, options, field
):
    with pytest.raises(ValidationError) as excinfo:
        start(versions[1], production, **options)

    assert field in excinfo.value.message_dict
    assert not CanaryRollout.objects.exists()


def test_start_canary__second_while_one_runs__refused(versions, production, agent):
    start(versions[1], production)
    v3 = factories.create_version(agent)

    with pytest.raises(Conflict, match="already running"):
        start(v3, production)
    assert CanaryRollout.objects.count() == 1


def test_start_canary__never_deployed__refused(agent, production):
    version = factories.create_version(agent)

    with pytest.raises(Conflict, match="deploy one first"):
        start(version, production)


def test_start_canary__user_without_permission__forbidden(versions, production):
    user = factories.UserFactory(is_staff=True)

    with pytest.raises(Forbidden, match="manage_canary"):
        canaries.start_canary(
            agent=versions[1].agent,
            environment=production,
            version=versions[1],
            actor=Actor.of(user),
            reason="r",
            percent="5",
        )


def test_deploy__while_canary_runs__refused(versions, production, agent):
    start(versions[1], production)

    with pytest.raises(Conflict, match="promote or abort it"):
        deploy_version(
            agent=agent,
            environment=production,
            version=factories.create_version(agent),
            actor=OPS,
            reason="r",
        )


def test_set_canary_percent__grows__same_salt_and_users_stay_in(versions, production, agent):
    rollout = start(versions[1], production, steps="5,25")
    users = [f"user-{i}" for i in range(5000)]
    before = canary_users(production, agent.slug, users)

    canaries.set_canary_percent(
        agent=agent, environment=production, percent="25", actor=OPS, reason="r"
    )

    after = canary_users(production, agent.slug, users)
    rollout.refresh_from_db()
    assert rollout.basis_points == 2500 and rollout.salt == f"canary:{rollout.pk}"
    assert before <= after
    assert 0.2 < len(after) / len(users) < 0.3


def test_advance_canary__moves_to_next_step_and_refuses_past_last(versions, production, agent):
    start(versions[1], production, steps="1,5")

    rollout = canaries.advance_canary(agent=agent, environment=production, actor=OPS, reason="r")

    assert rollout.basis_points == 500
    with pytest.raises(Conflict, match="last step"):
        canaries.advance_canary(agent=agent, environment=production, actor=OPS, reason="r")


def test_promote_canary__canary_becomes_stable(versions, production, agent):
    v1, v2 = versions
    rollout = start(v2, production)

    entry = canaries.promote_canary(agent=agent, environment=production, actor=OPS, reason="good")

    pointer = Pointer.objects.get(environment=production)
    assert pointer.stable_version == v2 and pointer.canary is None
    assert (entry.kind, entry.from_version, entry.to_version) == (ReleaseKind.PROMOTE, v1, v2)
    rollout.refresh_from_db()
    assert rollout.status == CanaryStatus.PROMOTED


def test_abort_canary__everyone_back_on_stable(versions, production, agent):
    v1, v2 = versions
    start(v2, production, percent="50")

    entry = canaries.abort_canary(agent=agent, environment=production, actor=OPS, reason="bad")

    assert entry.kind == ReleaseKind.CANARY_ABORT
    document = document_for(production, agent.slug)
    assert document.canary is None
    assert Pointer.objects.get(environment=production).stable_version == v1


def test_abort_canary__none_running__not_found(versions, production, agent):
    with pytest.raises(NotFound, match="no canary"):
        canaries.abort_canary(agent=agent, environment=production, actor=OPS, reason="r")


def test_rollback__during_canary__ends_canary_and_keeps_stable(versions, production, agent):
    v1, v2 = versions
    start(v2, production)

    entry = rollback(agent=agent, environment=production, actor=OPS, reason="incident")

    assert entry.kind == ReleaseKind.CANARY_ROLLBACK
    pointer = Pointer.objects.get(environment=production)
    assert pointer.stable_version == v1 and pointer.canary is None


def test_rollback__canary_version_is_not_a_rollback_target(versions, production, agent):
    _, v2 = versions
    start(v2, production)
    canaries.abort_canary(agent=agent, environment=production, actor=OPS, reason="r")
    v3 = factories.create_version(agent)
    factories.deploy(v3, production)

    with pytest.raises(Exception, match="never been active"):
        rollback(agent=agent, environment=production, to_version=v2, actor=OPS, reason="r")


def test_new_rollout__same_agent__new_salt_deals_other_users(versions, production, agent):
    users = [f"user-{i}" for i in range(20000)]
    start(versions[1], production, percent="10")
    first = canary_users(production, agent.slug, users)
    canaries.abort_canary(agent=agent, environment=production, actor=OPS, reason="r")
    start(versions[1], production, percent="10")

    second = canary_users(production, agent.slug, users)

    overlap = len(first & second) / len(users)
    assert 0.005 < overlap < 0.015  # ~1 %: independent, not the same guinea pigs


@pytest.mark.django_db(transaction=True)
def test_start_canary__two_at_once__exactly_one_runs():
    production = factories.environment("production")
    agent = factories.create_agent(slug="race-bot")
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def go(version):
        try:
            barrier.wait(timeout=10)
            results.append(start(version, production, percent="5"))
        except Exception as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(v,)) for v in (v2, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(type(r).__name__ for r in results) == ["CanaryRollout", "Conflict"]
    assert CanaryRollout.objects.filter(status=CanaryStatus.RUNNING).count() == 1


def _outcomes(version, count, at, prefix):
    return [
        {
            "event_id": f"{prefix}-{i}",
            "version_id": str(version.id),
            "user_id": f"u{i}",
            "ok": True,
            "timestamp": at.isoformat(),
        }
        for i in range(count)
    ]


def test_evaluate_canary__outcomes_of_the_minute_a_step_started__count_in_one_step_only(
    versions, production, agent
):
    # Given a two-step canary that passes a step within +10 points without baking, started
    # on a full minute, and 900 stable and 100 canary healthy outcomes at 12:05:10
    v1, v2 = versions
    CanaryPolicy.objects.create(environment=production, max_error_increase=0.05, bake_minutes=0)
    t0 = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(hours=1)
    rollout = start(v2, production, steps="10,50", now=t0)
    at = t0 + dt.timedelta(minutes=5, seconds=10)
    batch = _outcomes(v1, 900, at, "s") + _outcomes(v2, 100, at, "c")
    record_outcomes(
        agent=agent,
        environment_id=production.pk,
        events=parse_events({"events": batch}, now=timezone.now()),
    )

    # When the analysis advances the first step at 12:05:30 and looks again at 12:05:40
    first = canaries.evaluate_canary(rollout, now=t0 + dt.timedelta(minutes=5, seconds=30))
    second = canaries.evaluate_canary(rollout, now=t0 + dt.timedelta(minutes=5, seconds=40))

    # Then the 12:05 outcomes advanced the first step and do not count in the second:
    # it holds for lack of data instead of promoting on the same evidence
    rollout.refresh_from_db()
    assert first.verdict == Verdict.ADVANCE
    assert (first.inputs["canary"]["n"], first.inputs["stable"]["n"]) == (100, 900)
    assert second.verdict == Verdict.HOLD
    assert (second.inputs["canary"]["n"], second.inputs["stable"]["n"]) == (0, 0)
    assert (rollout.status, rollout.step_index) == (CanaryStatus.RUNNING, 1)
    assert get_canary_step_totals([rollout]) == {}

    # And outcomes of the step's first full minute (12:06) are its own
    later = t0 + dt.timedelta(minutes=6, seconds=5)
    record_outcomes(
        agent=agent,
        environment_id=production.pk,
        events=parse_events(
            {"events": _outcomes(v1, 3, later, "s2") + _outcomes(v2, 2, later, "c2")},
            now=timezone.now(),
        ),
    )
    totals = get_canary_step_totals([rollout])
    assert (totals[(rollout.pk, "canary")].n, totals[(rollout.pk, "stable")].n) == (2, 3)


def test_evaluate_canary__undecided_at_the_maximum_duration__rolled_back_and_marked(
    versions, production
):
    # Given a canary without outcomes, started longer ago than its 60-minute maximum
    _, v2 = versions
    CanaryPolicy.objects.create(environment=production, max_duration_minutes=60)
    t0 = timezone.now() - dt.timedelta(hours=2)
    rollout = start(v2, production, steps="10,50", now=t0)

    # When the analysis looks an hour before the deadline, and at it
    early = canaries.evaluate_canary(rollout, now=t0 + dt.timedelta(minutes=30))
    late = canaries.evaluate_canary(rollout, now=t0 + dt.timedelta(minutes=60))

    # Then it held, then ended as the policy says, recorded as ended by the deadline
    rollout.refresh_from_db()
    assert early.verdict == Verdict.HOLD and "Deadline: in 30 min" in early.inputs["status"][-1]
    assert late.verdict == Verdict.ROLLBACK
    assert "maximum duration of 60 min undecided" in late.explanation
    assert (rollout.status, rollout.ended_by_deadline) == (CanaryStatus.ROLLED_BACK, True)
    assert production.pointers.get().stable_version == versions[0]


def test_evaluate_canary__deadline_action_promote__promoted_and_marked(versions, production):
    _, v2 = versions
    CanaryPolicy.objects.create(
        environment=production, max_duration_minutes=60, deadline_action="promote"
    )
    t0 = timezone.now() - dt.timedelta(hours=2)
    rollout = start(v2, production, steps="10,50", now=t0)

    decision = canaries.evaluate_canary(rollout, now=t0 + dt.timedelta(minutes=61))

    rollout.refresh_from_db()
    assert decision.verdict == Verdict.PROMOTE
    assert (rollout.status, rollout.ended_by_deadline) == (CanaryStatus.PROMOTED, True)
    assert production.pointers.get().stable_version == v2
