"""Canary steps take the state the person confirmed, and check it under the write's lock.

set_canary_percent, advance_canary and promote_canary accept `expected_step` (step index,
basis points) as the confirmation page showed it; a canary that moved meanwhile is
refused with a Conflict and nothing is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.urls import reverse

from agentconfig.core.errors import Conflict
from agentconfig.models import Agent, Change
from deployments.models import (
    CanaryRollout,
    CanaryStatus,
    Environment,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
)
from deployments.services import canaries
from deployments.services.releases import lock_pointer
from tests import factories
from tests.deployments.canary_helpers import OPS, start

STEPS = "1,5,25,50"


def _canary(agent: Agent, production: Environment) -> CanaryRollout:
    """v1 stable in production, a canary of v2 at step 1 of 1,5,25,50 (1 %)."""
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    return start(v2, production, steps=STEPS)


def _state(rollout: CanaryRollout) -> tuple[int, int, str, str]:
    rollout.refresh_from_db()
    return (rollout.step_index, rollout.basis_points, rollout.status, str(rollout.steps))


def _advance(agent, environment, **kwargs):
    return canaries.advance_canary(
        agent=agent, environment=environment, actor=OPS, reason="looks fine", **kwargs
    )


def _promote(agent, environment, **kwargs):
    return canaries.promote_canary(
        agent=agent, environment=environment, actor=OPS, reason="ship it", **kwargs
    )


def _percent(agent, environment, **kwargs):
    return canaries.set_canary_percent(
        agent=agent, environment=environment, actor=OPS, reason="a few more", percent=10, **kwargs
    )


SERVICES: dict[str, Callable[..., object]] = {
    "advance": _advance,
    "promote": _promote,
    "percent": _percent,
}


@pytest.fixture
def rollout(agent, production) -> CanaryRollout:
    return _canary(agent, production)


# --- the services ----------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES.values(), ids=SERVICES.keys())
def test_canary_service__stale_expected_step__conflict_and_nothing_written(
    service, agent, production, rollout
):
    # Given the person confirmed step 1 (1 %), then the analysis advanced the canary to 5 %
    confirmed = (rollout.step_index, rollout.basis_points)
    _advance(agent, production)
    before = _state(rollout)
    pointer = Pointer.objects.get(agent=agent, environment=production)
    logs, changes = ReleaseLogEntry.objects.count(), Change.objects.count()

    # When the person's confirmation arrives
    with pytest.raises(Conflict) as refused:
        service(agent, production, expected_step=confirmed)

    # Then it is refused, says where the canary is now, and wrote nothing
    assert refused.value.message == (
        "the canary moved while you were reviewing: it is now at 5 % (step 2 of 4); check again."
    )
    assert _state(rollout) == before
    assert Pointer.objects.get(pk=pointer.pk).canary_id == rollout.pk
    assert (ReleaseLogEntry.objects.count(), Change.objects.count()) == (logs, changes)


@pytest.mark.parametrize("service", SERVICES.values(), ids=SERVICES.keys())
def test_canary_service__percent_changed_at_same_step__conflict(
    service, agent, production, rollout
):
    # Given a colleague changed the share of the same step (step 1: 1 % -> 3 %)
    canaries.set_canary_percent(
        agent=agent, environment=production, actor=OPS, reason="more data", percent=3
    )
    logs = ReleaseLogEntry.objects.count()

    with pytest.raises(Conflict, match="it is now at 3 %"):
        service(agent, production, expected_step=(0, 100))

    assert ReleaseLogEntry.objects.count() == logs


@pytest.mark.parametrize("service", SERVICES.values(), ids=SERVICES.keys())
def test_canary_service__expected_step_as_it_is__applies(service, agent, production, rollout):
    logs = ReleaseLogEntry.objects.count()

    service(agent, production, expected_step=(0, 100))

    assert ReleaseLogEntry.objects.count() == logs + 1


def test_canary_service__no_expected_step__applies_as_before(agent, production, rollout):
    # The analysis and the CLI act on the state they read under the lock themselves.
    moved = _advance(agent, production)

    assert (moved.step_index, moved.basis_points) == (1, 500)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_advance_canary__two_operators_from_the_same_step__exactly_one_advances():
    # Given two operators confirmed "advance from step 1 (1 %)" on the same canary
    production = factories.environment("production")
    agent = factories.create_agent(slug="race-bot")
    rollout = _canary(agent, production)
    confirmed = (rollout.step_index, rollout.basis_points)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def go() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(_advance(agent, production, expected_step=confirmed))
        except Exception as exc:  # the loser's Conflict is the result under test
            results.append(exc)
        finally:
            connection.close()

    # When both apply at the same moment
    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then one advanced, the other was told the canary moved, and it moved once
    assert sorted(type(r).__name__ for r in results) == ["CanaryRollout", "Conflict"]
    conflict = next(r for r in results if isinstance(r, Conflict))
    assert "it is now at 5 %" in conflict.message
    assert _state(rollout)[:2] == (1, 500)
    assert ReleaseLogEntry.objects.filter(kind=ReleaseKind.CANARY_CHANGE).count() == 1


# --- the admin pages -------------------------------------------------------------------


def _url(name: str, agent: Agent) -> str:
    return reverse(f"admin:agentconfig_agent_canary_{name}", args=[agent.pk, "production"])


def _hidden_state(rollout: CanaryRollout) -> str:
    return f"{rollout.pk}:{rollout.step_index}:{rollout.basis_points}"


def _post_data(action: str, state: str) -> dict[str, str]:
    data = {"reason": "confirmed on the page", "expected_canary": state}
    if action == "percent":
        data["percent"] = "10"
    return data


def test_canary_confirmation__sends_the_step_it_showed(admin_client, agent, rollout):
    confirmation = admin_client.post(_url("advance", agent), {"reason": "go"})

    assert confirmation.status_code == 200
    hidden = f'<input type="hidden" name="expected_canary" value="{_hidden_state(rollout)}">'
    assert hidden in confirmation.content.decode()


@pytest.mark.parametrize("action", SERVICES.keys())
def test_canary_apply__stale_hidden_state__refusal_on_the_page_and_nothing_written(
    admin_client, agent, production, rollout, action
):
    # Given the confirmation showed step 1, then the canary advanced
    stale = _hidden_state(rollout)
    _advance(agent, production)
    before, logs = _state(rollout), ReleaseLogEntry.objects.count()

    # When the confirmation is applied
    response = admin_client.post(_url(f"{action}_apply", agent), _post_data(action, stale))

    # Then the page says so (never a 500), and nothing changed
    assert response.status_code in (200, 409)
    assert "while you were reviewing" in response.content.decode()
    assert _state(rollout) == before
    assert ReleaseLogEntry.objects.count() == logs


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_canary_apply__canary_moves_between_page_check_and_lock__409_on_the_page():
    # Given the operator confirmed step 1 and posts it, while a colleague's transaction
    # holds the agent lock and has advanced the canary (committed only after the page has
    # read the old state and waits for the lock)
    production = factories.environment("production")
    agent = factories.create_agent(slug="race-bot")
    rollout = _canary(agent, production)
    state = _hidden_state(rollout)
    client = factories.login(factories.user_with(username="boss", is_staff=True, is_superuser=True))
    responses: list[object] = []

    def operator() -> None:
        try:
            responses.append(
                client.post(_url("advance_apply", agent), _post_data("advance", state))
            )
        except Exception as exc:
            responses.append(exc)
        finally:
            connection.close()

    page = threading.Thread(target=operator)
    with transaction.atomic():
        lock_pointer(agent, production)
        _advance(agent, production)
        page.start()
        _wait_until_someone_waits_for_a_lock()
    page.join(timeout=60)

    # Then the service refused under the lock, and the page shows it with the canary now
    [response] = responses
    assert response.status_code == 409, response
    content = response.content.decode()
    assert "the canary moved while you were reviewing: it is now at 5 %" in content
    assert "step 2 of 4: 5 % of users" in content
    assert _state(rollout)[:2] == (1, 500)
    assert ReleaseLogEntry.objects.filter(kind=ReleaseKind.CANARY_CHANGE).count() == 1
    assert CanaryRollout.objects.get(pk=rollout.pk).status == CanaryStatus.RUNNING


def _wait_until_someone_waits_for_a_lock(timeout: float = 20) -> None:
    """Return once another connection to this database is blocked on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # Inside a transaction pg_stat_activity is a snapshot: take a fresh one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("the page never waited for the agent lock")
