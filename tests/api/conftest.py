"""Fixtures of the management API tests: role users, their tokens, and an HTTP caller."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from agentconfig.api.services import tokens
from agentconfig.core.actors import Actor
from agentconfig.core.roles import VIEW
from tests import factories

BASE = "/api/v1/manage"
CLI = Actor.cli("tests")
# Each role of agentconfig.core.roles, plus a viewer (every view permission, nothing else)
# and a nobody (signed in, no permission at all).
ROLES = ("editor", "reviewer", "deployer", "admin", "viewer", "nobody")


class Api:
    """Calls the management API over HTTP (Django's test client), with a token or none."""

    def __init__(self) -> None:
        # As a script calls it: no CSRF token, so CSRF checks on would refuse a form post.
        self.client = Client(enforce_csrf_checks=True)

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        raw: str | bytes | None = None,
        **query: Any,
    ) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        url = BASE + path
        if method == "GET":
            return self.client.get(url, query, **headers)
        data = raw if raw is not None else json.dumps(body)
        return getattr(self.client, method.lower())(
            url, data=data, content_type="application/json", **headers
        )

    def get(self, path: str, token: str | None = None, **query: Any) -> Any:
        return self.call("GET", path, token, **query)

    def post(self, path: str, token: str | None = None, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, token, body, **kw)


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def role_user(db) -> Callable[[str], Any]:
    """The user of a role, made when first asked for (one per role per test)."""
    people = factories.People()
    made: dict[str, Any] = {}

    def user(role: str) -> Any:
        if role not in made:
            if role == "viewer":
                made[role] = factories.user_with(*VIEW, username="viewer")
            elif role == "nobody":
                made[role] = factories.user_with(username="nobody")
            else:
                made[role] = people[role]
        return made[role]

    return user


@pytest.fixture
def token_for(role_user) -> Callable[..., str]:
    """A fresh token (plaintext) of a role's user: token_for("editor", read_only=True)."""
    counter = iter(range(1, 10_000))

    def token(role: str, **options: Any) -> str:
        _, plaintext = tokens.create_token(
            user=role_user(role), name=f"{role}-{next(counter)}", actor=CLI, **options
        )
        return plaintext

    return token


@pytest.fixture
def agent(db):
    return factories.create_agent(slug="support-bot")


@pytest.fixture
def versions(agent):
    """support-bot v1..v3."""
    return [factories.create_version(agent, change_description=f"change {n}") for n in (1, 2, 3)]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """`response` is an RFC 9457 problem of `status` and our `code`; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["type"] == f"urn:agentconfig:problem:{code}"
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body
