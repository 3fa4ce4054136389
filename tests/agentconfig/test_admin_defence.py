"""The admin defended like a production control plane (docs/security.md).

Sign-in throttling (django-axes, lockout per username and address), a strict
Content-Security-Policy on every admin page (no inline script, handler or style), neither on
the runtime API's lean path, and password rules in dev and production.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import NoReverseMatch, reverse

from agentconfig.site.management.commands.load_demo import DEMO_PASSWORD
from tests import factories
from tests.agentconfig.wsgi_calls import call
from tests.deployments.canary_helpers import start
from tests.flags.helpers import make_flag

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"  # tests.factories.UserFactory's
LOGIN = "/admin/login/"
LIMIT = settings.AXES_FAILURE_LIMIT


@pytest.fixture
def alice(db) -> Any:
    return factories.UserFactory(username="alice", is_staff=True)


def sign_in(client: Client, password: str, username: str = "alice", address: str = "10.0.0.1"):
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- sign-in throttling ----------------------------------------------------------------


def test_settings__axes_backend_first_and_its_middleware_last():
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"
    assert (LIMIT, settings.AXES_COOLOFF_TIME.total_seconds()) == (5, 15 * 60)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_sign_in__wrong_passwords_up_to_the_limit_then_the_right_one__refused_with_lockout_page(
    client, alice
):
    # Given: four wrong passwords are only wrong passwords
    for _ in range(LIMIT - 1):
        assert sign_in(client, "wrong password").status_code == 200
    # When: the fifth locks the pair out, and the right password comes after it
    fifth = sign_in(client, "wrong password")
    response = sign_in(client, PASSWORD)

    # Then
    assert fifth.status_code == 429
    assert response.status_code == 429
    content = response.content.decode()
    assert "Sign-in locked: too many failed attempts (5)" in content
    assert "Try again in 15 minutes" in content
    assert "axes_reset_username" in content
    assert not signed_in(client)
    assert client.get("/admin/").status_code == 302  # to the login page


def test_sign_in__lockout__logged_with_username_address_and_how_to_unlock(client, alice, caplog):
    with caplog.at_level(logging.WARNING, logger="agentconfig.security"):
        for _ in range(LIMIT):
            sign_in(client, "wrong password")

    records = [r for r in caplog.records if r.name == "agentconfig.security"]
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert "locked out: username='alice' address=10.0.0.1 after 5 failed attempts" in message
    assert "manage.py axes_reset_username alice" in message


def test_sign_in__locked_out_pair__same_user_elsewhere_and_others_here_still_sign_in(alice):
    # Given
    factories.UserFactory(username="bob", is_staff=True)
    for _ in range(LIMIT):
        sign_in(Client(), "wrong password")

    # When
    elsewhere, here_bob = Client(), Client()
    sign_in(elsewhere, PASSWORD, address="10.0.0.2")
    sign_in(here_bob, PASSWORD, username="bob")

    # Then: a guesser cannot lock a colleague out from another address
    assert signed_in(elsewhere)
    assert signed_in(here_bob)


def test_sign_in__typos_below_the_limit_then_success__counter_starts_again(client, alice):
    for _ in range(LIMIT - 1):
        sign_in(client, "wrong password")
    assert sign_in(client, PASSWORD).status_code == 302
    client.logout()

    for _ in range(LIMIT - 1):
        sign_in(client, "wrong password")

    assert sign_in(client, PASSWORD).status_code == 302


def test_sign_in__failed_attempt__stored_without_the_password(client, alice):
    sign_in(client, "hunter2-secret")

    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.ip_address == "10.0.0.1"
    assert "hunter2-secret" not in attempt.post_data


@pytest.mark.parametrize(
    "command", [("axes_reset",), ("axes_reset_username", "alice"), ("axes_reset_ip", "10.0.0.1")]
)
def test_axes_reset__locked_out_user__signs_in_again(client, alice, command):
    # Given
    for _ in range(LIMIT):
        sign_in(client, "wrong password")
    assert sign_in(client, PASSWORD).status_code == 429

    # When
    out = io.StringIO()
    call_command(*command, stdout=out)

    # Then
    assert "attempts removed" in out.getvalue()
    assert sign_in(client, PASSWORD).status_code == 302
    assert signed_in(client)


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.7", "10.0.0.9"),  # no proxy trusted: the header is the client's words
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the left part is forgeable
        (2, "198.51.100.1, 203.0.113.7, 10.1.0.1", "203.0.113.7"),
        (1, "", "10.0.0.9"),
    ],
)
def test_client_ip__trusted_proxy_count__right_most_untrusted_hop(
    rf, settings, proxies, forwarded, expected
):
    from agentconfig.core.login_defence import client_ip

    settings.AGENTCONFIG_TRUSTED_PROXY_COUNT = proxies
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


# --- Content-Security-Policy -------------------------------------------------------------

EXPECTED_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


class InlineCode(HTMLParser):
    """Everything on a page that a strict CSP would block: inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script_open: str | None = None
        self._script_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name == "style":
                self.found.append(f"<{tag} style={value!r}>")
            url = (value or "").strip().lower()
            if name in ("href", "src", "action", "formaction") and url.startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script":
            # Data blocks (json_script) are not run, so CSP does not apply to them.
            data = (named.get("type") or "").lower() in ("application/json", "application/ld+json")
            if not named.get("src") and not data:
                self._script_open = tag
                self._script_text = ""

    def handle_data(self, data: str) -> None:
        if self._script_open:
            self._script_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script_open:
            self.found.append(f"inline <script>: {self._script_text.strip()[:80]!r}")
            self._script_open = None


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def directives(header: str) -> dict[str, str]:
    parts = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


@pytest.fixture
def world(db) -> dict[str, Any]:
    """Enough data that the admin's own pages have something to show: an agent live in
    both environments with a running canary in staging, a key, a flag."""
    staging, production = factories.environment("staging"), factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent, change_description="first")
    v2 = factories.create_version(agent, change_description="<script>alert(1)</script>")
    factories.deploy(v1, production)
    factories.deploy(v1, staging)
    start(v2, staging)
    factories.create_api_key(production)
    make_flag("web-search", agent=agent)
    return {"agent": agent}


def admin_start_urls() -> list[str]:
    """The changelist and add page of every registered model."""
    urls = ["/admin/"]
    for model in admin.site._registry:
        opts = model._meta
        for view in ("changelist", "add"):
            try:
                urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}"))
            except NoReverseMatch:
                continue
    return urls


SKIP = ("/admin/logout/", "/admin/jsi18n/", "/admin/r/")
MAX_PAGES = 400
QUERIES_PER_PATH = 2  # a list's filters and orderings render the same template


def crawl(client: Client, seeds: list[str]) -> dict[str, Any]:
    """GET every admin page reachable from the seeds by links (a couple of query strings
    per path), up to MAX_PAGES: state changes are POST-only, so GET is safe."""
    queue, seen, per_path, pages = list(seeds), set(), Counter(), {}
    while queue and len(pages) < MAX_PAGES:
        url = queue.pop(0)
        path = urlsplit(url).path
        if url in seen or not path.startswith("/admin/") or path.startswith(SKIP):
            continue
        seen.add(url)
        if per_path[path] >= QUERIES_PER_PATH:
            continue
        per_path[path] += 1
        response = client.get(url)
        pages[url] = response
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        links = Links()
        links.feed(response.content.decode())
        for href in links.hrefs:
            target = urljoin(url, href)
            if not urlsplit(target).netloc or urlsplit(target).netloc == "testserver":
                queue.append(urlsplit(target)._replace(scheme="", netloc="", fragment="").geturl())
    return pages


def test_admin_pages__every_page_reachable_by_a_superuser__strict_csp_and_no_inline_code(
    admin_client, world
):
    # Given
    agent = world["agent"]
    seeds = [*admin_start_urls(), reverse("admin:agentconfig_agent_change", args=[agent.pk])]

    # When
    pages = crawl(admin_client, seeds)

    # Then: our own pages were reached, not only the stock ones
    html_pages = {
        url: response
        for url, response in pages.items()
        if response.status_code == 200 and "text/html" in response.get("Content-Type", "")
    }
    paths = {urlsplit(url).path for url in html_pages}
    agent_page = f"/admin/agentconfig/agent/{agent.pk}/"
    for expected in ("change/", "timeline/", "rollback/production/", "versions/new/", "advance/"):
        assert any(p.startswith(agent_page) and p.endswith(expected) for p in paths), expected
    assert any("/compare/" in p for p in paths)
    assert len(html_pages) > 60
    assert not [u for u, r in pages.items() if r.status_code >= 500]
    problems = {}
    for url, response in html_pages.items():
        header = response.get("Content-Security-Policy", "")
        policy = directives(header)
        wrong = {k: v for k, v in EXPECTED_DIRECTIVES.items() if policy.get(k) != v}
        found = inline_code(response.content.decode())
        if wrong or found:
            problems[url] = {"directives": wrong, "inline": found}
    assert not problems


def test_login_and_lockout_pages__anonymous__strict_csp_and_no_inline_code(client, alice):
    pages = [client.get(LOGIN)]
    for _ in range(LIMIT):
        last = sign_in(client, "wrong password")
    pages.append(last)

    for response in pages:
        policy = directives(response["Content-Security-Policy"])
        assert {k: policy.get(k) for k in EXPECTED_DIRECTIVES} == EXPECTED_DIRECTIVES
        assert inline_code(response.content.decode()) == []


def test_inline_code_detector__each_kind__found():
    html = (
        '<script>alert(1)</script><script src="/static/x.js"></script>'
        '<script type="application/json">{"a": 1}</script>'
        '<button onclick="go()">x</button><p style="color:red">x</p><style>p{}</style>'
        '<a href="JavaScript:void(0)">x</a>'
    )

    found = inline_code(html)

    assert len(found) == 5, found


# --- the runtime API's lean path ---------------------------------------------------------


def wsgi_get(path: str, **headers: str) -> tuple[int, dict[str, str]]:
    status, response_headers, _ = call(path, headers=headers)
    return status, response_headers


@pytest.mark.django_db(transaction=True)
def test_runtime_routes__lean_wsgi_path__no_admin_middleware_no_csp_no_axes():
    # Given
    _, production = factories.live_agent()
    _, key = factories.create_api_key(production)
    auth = {"Authorization": f"Bearer {key}"}

    # When: the config, an OFREP call, the health check, and a wrong key
    answers = {
        "config": wsgi_get("/api/v1/agents/support-bot/config", **auth),
        "ofrep": wsgi_get("/ofrep/v1/evaluate/flags/web-search", **auth),
        "healthz": wsgi_get("/healthz"),
        "bad key": wsgi_get("/api/v1/agents/support-bot/config", Authorization="Bearer nope"),
        "admin": wsgi_get("/admin/login/"),
    }

    # Then: CSPMiddleware, in the same MIDDLEWARE list as AxesMiddleware, never ran on the
    # runtime routes; the admin behind the same application has it
    for name in ("config", "ofrep", "healthz", "bad key"):
        status, headers = answers[name]
        assert status < 500, name
        assert headers["Content-Type"].startswith("application/json"), name  # the runtime view
        assert "Content-Security-Policy" not in headers, name
        assert "Set-Cookie" not in headers, name
    assert answers["bad key"][0] == 401
    assert "Content-Security-Policy" in answers["admin"][1]
    assert not AccessAttempt.objects.exists()  # a wrong API key is not a sign-in failure


# --- passwords -----------------------------------------------------------------------------


def test_password_validators__dev_and_test_settings__demo_and_test_passwords_accepted():
    user = get_user_model()(username="admin", email="admin@example.com")

    for password in (DEMO_PASSWORD, PASSWORD):
        validate_password(password, user=user)
    with pytest.raises(ValidationError):
        validate_password("password", user=user)


def test_admin_add_user_form__weak_password__refused_on_the_form(db):
    form_class = admin.site._registry[get_user_model()].add_form
    data = {"username": "carol", "usable_password": "true"}

    weak = form_class(data={**data, "password1": "12345678", "password2": "12345678"})
    strong = form_class(data={**data, "password1": PASSWORD, "password2": PASSWORD})

    assert not weak.is_valid()
    assert "password2" in weak.errors
    strong.is_valid()
    assert "password2" not in strong.errors
    assert "password1" not in strong.errors


PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "agentconfig.settings.production",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "agentconfig.example.com",
    "DATABASE_URL": "postgres://agentconfig@db.example.com:5432/agentconfig",
}
PROBE = """
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
for password in ("short-pw-1", "correct horse battery"):
    try:
        validate_password(password)
        print(password, "ok")
    except ValidationError as error:
        print(password, "refused:", " ".join(error.messages))
print("cookies", settings.SESSION_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
      settings.SESSION_COOKIE_SAMESITE, settings.CSRF_COOKIE_SECURE, settings.SESSION_COOKIE_AGE)
"""


def test_production_settings__short_password_refused_and_cookies_hardened():
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **PRODUCTION}

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "--no-imports", "-c", PROBE],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("short-pw-1 refused: This password is too short.")
    assert "at least 12 characters" in lines[0]
    assert lines[1] == "correct horse battery ok"
    assert lines[2] == f"cookies True True Lax True {8 * 60 * 60}"
