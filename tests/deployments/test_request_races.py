"""Races on requests (PostgreSQL, threads): what the person confirmed is checked under the lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from deployments.models import Pointer, RequestStatus
from deployments.services import requests as request_services
from tests import factories
from tests.factories import member

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run_together(*targets) -> None:
    barrier = threading.Barrier(len(targets))

    def run(target) -> None:
        try:
            barrier.wait(timeout=10)
            target()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def _approved_request():
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    pm, reviewer = member("pm", "Editors"), member("reviewer", "Reviewers")
    request = request_services.create_request(
        agent=agent, environment=production, version=v2, actor=Actor.of(pm), reason="restore"
    )
    request_services.approve_request(request=request, actor=Actor.of(reviewer), comment="ok")
    return production, agent, (v1, v2, v3), request


def test_apply_request__deploy_lands_between_reading_and_applying__conflict_not_applied():
    # Given an approved request read by an operator while v1 was active
    production, agent, (v1, v2, v3), request = _approved_request()
    operator = Actor.of(member("operator", "Deployers"))
    outcomes: list[str] = []

    def apply() -> None:
        try:
            request_services.apply_request(
                request=request, actor=operator, expected_active_id=str(v1.pk)
            )
            outcomes.append("applied")
        except (Conflict, Forbidden) as exc:
            outcomes.append(type(exc).__name__)

    def break_glass_deploy() -> None:
        factories.deploy(v3, production)
        outcomes.append("deployed v3")

    # When a break-glass deploy of v3 races with the apply
    _run_together(apply, break_glass_deploy)

    # Then the request never lands on top of a state its reader did not see: either it
    # was applied first (and v3 came after it), or it was refused and stays open
    pointer = Pointer.objects.get(agent=agent, environment=production)
    request.refresh_from_db()
    assert pointer.stable_version == v3
    if request.status == RequestStatus.APPLIED:
        assert sorted(outcomes) == ["applied", "deployed v3"]
        moves = list(
            agent.release_log.order_by("created_at", "id").values_list("to_version", flat=True)
        )
        assert moves[-2:] == [v2.pk, v3.pk]
    else:
        assert request.status == RequestStatus.OPEN
        assert sorted(outcomes) == ["Conflict", "deployed v3"]


def test_apply_request__two_operators_at_once__released_once():
    production, agent, (v1, v2, _v3), request = _approved_request()
    operators = [Actor.of(member(f"operator-{n}", "Deployers")) for n in (1, 2)]
    outcomes: list[str] = []

    def apply(actor: Actor):
        def run() -> None:
            try:
                request_services.apply_request(
                    request=request, actor=actor, expected_active_id=str(v1.pk)
                )
                outcomes.append("applied")
            except Conflict:
                outcomes.append("conflict")

        return run

    _run_together(*(apply(actor) for actor in operators))

    assert sorted(outcomes) == ["applied", "conflict"]
    assert Pointer.objects.get(agent=agent, environment=production).stable_version == v2
    assert agent.release_log.filter(request=request).count() == 1
