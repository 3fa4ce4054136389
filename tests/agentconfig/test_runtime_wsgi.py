"""The lean WSGI path: runtime routes skip the admin's middleware, keep what matters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import factories
from tests.agentconfig.wsgi_calls import call

# Real requests through the real WSGI application; its request signals manage database
# connections as in production, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key() -> str:
    _, production = factories.live_agent()
    return factories.create_api_key(production)[1]


def test_config__lean_path__same_answer_as_the_full_stack(client, key):
    status, headers, body = call(
        "/api/v1/agents/support-bot/config", headers={"Authorization": f"Bearer {key}"}
    )

    full = client.get("/api/v1/agents/support-bot/config", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert status == 200 and body == full.content
    assert headers["ETag"] == full["ETag"]


def test_config__lean_path__no_session_csrf_or_cookie_machinery(key):
    _, headers, _ = call(
        "/api/v1/agents/support-bot/config", headers={"Authorization": f"Bearer {key}"}
    )

    assert "Set-Cookie" not in headers
    assert "Cookie" not in headers["Vary"]
    # SecurityMiddleware still applies.
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_admin__not_a_runtime_route__served_by_the_full_stack():
    status, headers, _ = call("/admin/login/")

    assert status == 200
    assert "csrftoken" in headers.get("Set-Cookie", "")


def test_runtime_route__host_not_allowed__400_json(key):
    status, _, body = call(
        "/api/v1/agents/support-bot/config",
        headers={"Authorization": f"Bearer {key}"},
        host="evil.example",
    )

    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_host"


def test_runtime_route__ssl_redirect_configured__redirects_and_hsts_on_https(key, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

    plain = call("/api/v1/agents/support-bot/config", headers={"Authorization": f"Bearer {key}"})
    secure = call(
        "/api/v1/agents/support-bot/config",
        headers={"Authorization": f"Bearer {key}"},
        https=True,
    )

    assert plain[0] == 301 and plain[1]["Location"].startswith("https://")
    assert secure[0] == 200 and secure[1]["Strict-Transport-Security"] == "max-age=3600"
    assert call("/healthz")[0] == 200  # load balancers probe over plain HTTP


def test_outcomes__body_over_the_upload_limit__413(key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    status, _, body = call(
        "/api/v1/agents/support-bot/outcomes",
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        body=b'{"events": [' + b" " * 2000 + b"]}",
    )

    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"


def test_config_at__time_travel__takes_the_full_stack_for_sessions(key):
    # Signed-in auditors use the session: the lean path has none, so ?at= is not on it.
    status, headers, _ = call(
        "/api/v1/agents/support-bot/config", query="at=2020-01-01T00:00:00Z&environment=production"
    )

    assert status == 401  # no key and no session: the full stack's answer
    assert "Cookie" in headers.get("Vary", "")


def test_runtime_route__unexpected_error__json_500_logged(key, monkeypatch, caplog):
    # Fault injection: a bug in the view must not leak a debug page.
    from delivery import views

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(views, "get_document", broken)

    status, _, body = call(
        "/api/v1/agents/support-bot/config", headers={"Authorization": f"Bearer {key}"}
    )

    assert status == 500
    assert json.loads(body)["error"]["code"] == "internal_error"
    assert any("Internal Server Error" in r.getMessage() for r in caplog.records)
