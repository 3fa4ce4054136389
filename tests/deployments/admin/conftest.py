"""Fixtures of the deployment admin pages: environments that take releases directly, canaries."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from deployments.services.outcomes import MAX_EVENTS, parse_events, record_outcomes
from tests import factories
from tests.deployments import canary_helpers


def take_releases_directly(*environments) -> None:
    """Let these environments take deploys and canaries without approval.

    The canary pages are tested apart from approvals (deployments.approvals), as the
    deploy pages are.
    """
    for environment in environments:
        environment.required_approvals = 0
        environment.save()


@pytest.fixture
def direct_releases(staging, production) -> None:
    """Staging and production take deploys and canaries without approval."""
    take_releases_directly(staging, production)


@pytest.fixture
def canary_client(client_with_permissions) -> Client:
    """A staff user who may view agents and manage canaries, nothing else."""
    return client_with_permissions("agentconfig.view_agent", "deployments.manage_canary")


@pytest.fixture
def canary_agent(agent, production, direct_releases):
    """support-bot with v1 stable in production, and a canary of v2 at 1 % of 1,5,25,50."""
    v1 = factories.create_version(agent, change_description="first")
    v2 = factories.create_version(agent, change_description="second", model="gpt-4o")
    factories.create_version(agent, change_description="third", temperature=0.7)
    factories.deploy(v1, production)
    canary_helpers.start(
        v2,
        production,
        actor=factories.ACTOR,
        reason="try v2 on a few users",
        steps="1,5,25,50",
        # Running for a while: a step counts outcomes from its first full minute on.
        now=timezone.now() - dt.timedelta(minutes=10),
    )
    return agent


@pytest.fixture
def report() -> Callable[..., None]:
    """report(agent, environment, version, ok=, failed=): outcomes via the real services."""

    def _report(agent, environment, version, *, ok: int = 0, failed: int = 0) -> None:
        now = timezone.now()
        outcomes = [True] * ok + [False] * failed
        for start in range(0, len(outcomes), MAX_EVENTS):
            events = [
                {
                    "event_id": str(uuid.uuid4()),
                    "version_id": str(version.pk),
                    "user_id": f"user-{start + index}",
                    "ok": value,
                }
                for index, value in enumerate(outcomes[start : start + MAX_EVENTS])
            ]
            record_outcomes(
                agent=agent,
                environment_id=environment.pk,
                events=parse_events({"events": events}, now=now),
            )

    return _report
