"""GET /environments: what is active where."""

from __future__ import annotations

import pytest

from deployments.services import canaries
from tests import factories
from tests.api.conftest import ROLES, assert_problem


@pytest.fixture
def released(versions):
    """production runs v2, staging v3."""
    production, staging = factories.environment("production"), factories.environment("staging")
    factories.deploy(versions[1], production)
    factories.deploy(versions[2], staging)
    return versions


@pytest.mark.parametrize("role", ROLES)
def test_environments__what_is_active_where(api, token_for, released, role):
    response = api.get("/environments", token_for(role))

    if role == "nobody":
        assert_problem(response, 403, "forbidden")
        return
    assert response.status_code == 200
    by_slug = {env["slug"]: env for env in response.json()}
    assert [(a["agent"], a["version"]) for a in by_slug["production"]["active"]] == [
        ("support-bot", 2)
    ]
    assert [(a["agent"], a["version"]) for a in by_slug["staging"]["active"]] == [
        ("support-bot", 3)
    ]
    assert by_slug["production"]["active"][0]["canary"] is None
    assert by_slug["production"]["required_approvals"] == 1


def test_environments__in_position_order_and_empty_when_nothing_deployed(api, token_for, agent):
    factories.environment("production")
    factories.environment("staging")

    body = api.get("/environments", token_for("viewer")).json()

    assert [env["slug"] for env in body][:2] == ["staging", "production"]
    assert all(env["active"] == [] for env in body)


def test_environments__a_running_canary_with_its_version_and_share(api, token_for, released):
    # Given staging on v3, with v1 as a canary on 5% of its users
    staging = factories.environment("staging")
    canaries.start_canary(
        agent=released[0].agent,
        environment=staging,
        version=released[0],
        actor=factories.ACTOR,
        reason="try the old prompt on a few users",
        percent=5,
    )

    body = api.get("/environments", token_for("deployer")).json()

    active = next(env for env in body if env["slug"] == "staging")["active"][0]
    assert (active["version"], active["canary"]) == (3, {"version": 1, "percent": 5.0})
