"""The gate wired into releases: deploys, canaries and requests refuse a regression."""

from __future__ import annotations

import pytest

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict
from deployments.models import Pointer, ReleaseLogEntry
from deployments.services import requests
from deployments.services.canaries import start_canary
from deployments.services.releases import deploy_version
from evaluations.services.gate_overrides import record_gate_override
from tests import factories
from tests.evaluations.helpers import (
    require_evaluation,
    stable_and_candidate,
)

pytestmark = pytest.mark.django_db

OPS = Actor.system("ops")


@pytest.fixture
def regression(agent, production, eval_settings, llm):
    """v1 stable in production scoring 1.0; v2 scoring 0.25; evaluation required."""
    stable, candidate, _ = stable_and_candidate(agent, production, llm, candidate_yes=1)
    require_evaluation(production, tolerance=0.05)
    return stable, candidate


def approved(version, environment, kind="stable", plan=""):
    editor = Actor.of(factories.user_with("deployments.add_deploymentrequest"))
    reviewer = Actor.of(factories.user_with("deployments.review_deploymentrequest"))
    request = requests.create_request(
        agent=version.agent,
        environment=environment,
        version=version,
        actor=editor,
        reason="r",
        kind=kind,
        canary_plan=plan,
    )
    requests.approve_request(request=request, actor=reviewer, comment="ok")
    return request


def test_apply_request__evaluation_regression__refused_and_nothing_moves(regression, production):
    stable, candidate = regression
    request = approved(candidate, production)

    with pytest.raises(Conflict, match="evaluation regression"):
        requests.apply_request(request=request, actor=OPS)
    assert Pointer.objects.get(environment=production).stable_version == stable


def test_start_canary__evaluation_regression__refused(regression, production):
    _, candidate = regression
    request = approved(candidate, production, kind="canary", plan="5")

    with pytest.raises(Conflict, match="evaluation regression"):
        requests.apply_request(request=request, actor=OPS)


def test_apply_request__reviewer_override__released_and_recorded(regression, production, agent):
    _, candidate = regression
    request = approved(candidate, production)
    reviewer = Actor.of(factories.user_with("evaluations.override_gate"))
    override = record_gate_override(
        agent=agent,
        environment=production,
        version=candidate,
        actor=reviewer,
        reason="judge is wrong on c2-c4: golden answers outdated",
    )

    entry = requests.apply_request(request=request, actor=OPS)

    assert entry.details["evaluation"] == "regression"
    assert entry.details["evaluation_override"] == override.pk
    assert Pointer.objects.get(environment=production).stable_version == candidate


def test_deploy__break_glass__skips_the_gate_and_says_so(regression, production, agent):
    _, candidate = regression
    admin = Actor.of(factories.user_with("deployments.deploy_version", "deployments.break_glass"))

    entry = deploy_version(
        agent=agent,
        environment=production,
        version=candidate,
        actor=admin,
        reason="incident",
        break_glass="billing down",
    )

    assert entry.details == {"break_glass": "billing down"}


def test_canary__environment_without_policy__gate_not_involved(agent, staging):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, staging)

    start_canary(agent=agent, environment=staging, version=v2, actor=OPS, reason="r", percent="5")

    assert "evaluation" not in ReleaseLogEntry.objects.first().details
