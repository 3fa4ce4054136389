"""Who may call the management API: tokens only, and never the runtime's keys (nor the reverse)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from agentconfig.api.models import PersonalAccessToken
from agentconfig.api.services import tokens
from tests import factories
from tests.api.conftest import CLI, assert_problem


def test_no_token__401_problem_with_www_authenticate(api, db):
    response = api.get("/agents")

    body = assert_problem(response, 401, "unauthorized")
    assert "Authorization: Bearer" in body["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer acp_nonsense", "Token x"]
)
def test_malformed_or_unknown_token__401(api, db, authorization):
    response = api.client.get("/api/v1/manage/agents", HTTP_AUTHORIZATION=authorization)

    assert_problem(response, 401, "unauthorized")


def test_runtime_key__refused_by_the_management_api(api, db):
    _, runtime_key = factories.create_api_key(factories.environment("production"))

    assert_problem(api.get("/agents", runtime_key), 401, "unauthorized")


def test_token__refused_by_the_runtime_endpoint(api, token_for, agent):
    # Given an agent deployed to production and an admin's token
    version = factories.create_version(agent)
    factories.deploy(version, factories.environment("production"))
    token = token_for("admin")

    # When the token is presented to the runtime config endpoint
    response = api.client.get(
        f"/api/v1/agents/{agent.slug}/config", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    # Then it is refused like any unknown key
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token__refused_on_the_next_request(api, token_for, role_user, agent):
    token = token_for("editor")
    assert api.get("/agents", token).status_code == 200

    tokens.revoke_token(token=tokens.authenticate(token), actor=CLI)

    body = assert_problem(api.get("/agents", token), 401, "unauthorized")
    assert "expired or revoked" in body["detail"]


def test_expired_token__refused_on_the_next_request(api, token_for, agent):
    token = token_for("editor", expires_in_days=1)
    assert api.get("/agents", token).status_code == 200

    PersonalAccessToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert_problem(api.get("/agents", token), 401, "unauthorized")


def test_deactivated_user__token_refused(api, token_for, role_user, agent):
    token = token_for("editor")
    user = role_user("editor")
    user.is_active = False
    user.save()

    assert_problem(api.get("/agents", token), 401, "unauthorized")


def test_read_only_token__reads_but_refused_on_writes(api, token_for, versions, agent):
    token = token_for("editor", read_only=True)

    assert api.get(f"/agents/{agent.slug}/versions", token).status_code == 200
    response = api.post(
        f"/agents/{agent.slug}/versions",
        token,
        {"config": factories.config(), "change_description": "from a read-only token"},
    )

    body = assert_problem(response, 403, "forbidden")
    assert "read-only" in body["detail"]
    assert agent.versions.count() == 3


def test_token_use__recorded_as_last_used(api, token_for, agent):
    token = token_for("editor")

    api.get("/agents", token)

    assert PersonalAccessToken.objects.get().last_used_at is not None


def test_session_cookie__not_an_api_credential(api, role_user, agent):
    # A signed-in browser session does not authenticate API calls (no CSRF surface).
    api.client.force_login(role_user("admin"))

    assert_problem(api.get("/agents"), 401, "unauthorized")
