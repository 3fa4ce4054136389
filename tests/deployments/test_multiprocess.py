"""A deploy reaches every process of a real multi-worker gunicorn server within one second."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SHARED_CACHES = ("agentconfig.cache.RedisCache",)

pytestmark = pytest.mark.skipif(
    settings.CACHES["default"]["BACKEND"] not in SHARED_CACHES,
    reason="needs a shared cache: set CACHE_URL=redis://... (a per-process cache is "
    "documented not to propagate deploys; see agentconfig.W001)",
)


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, key: str | None = None) -> tuple[int, bytes]:
    # A new connection per request, so gunicorn hands requests to any of its workers.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def server(transactional_db):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentconfig.settings.test",
        "DATABASE_URL": _database_url(),
        "CACHE_URL": os.environ["CACHE_URL"],
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "agentconfig.wsgi",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start within 30 s")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_deploy__two_gunicorn_workers__every_request_sees_it_within_one_second(server):
    # Given v1 served (and cached) by a two-worker server
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    key = factories.create_api_key(production)[1]
    path = "/api/v1/agents/support-bot/config"
    for _ in range(20):
        status, body = _get(server, path, key)
        assert status == 200 and json.loads(body)["version"]["number"] == 1

    # When v2 is deployed
    factories.deploy(v2, production)
    deployed_at = time.monotonic()

    # Then within a second, 20 requests in a row (spread over both workers) all get v2
    in_a_row = 0
    while in_a_row < 20:
        elapsed = time.monotonic() - deployed_at
        assert elapsed < 1.0, f"still serving v1 {elapsed:.3f} s after the deploy"
        status, body = _get(server, path, key)
        in_a_row = in_a_row + 1 if json.loads(body)["version"]["number"] == 2 else 0
