"""Changes made by the operator CLI reach every worker of a real two-worker gunicorn server.

Each test starts `gunicorn agentconfig.wsgi --workers 2` on the test database (the SQLite
file or PostgreSQL; CACHE_URL is passed through when set, though the runtime path never
uses it), warms both workers, runs a real `manage.py` command in its own process, waits
until it has returned plus one second (four refresh intervals at the default 0.25 s), and
then requires every request on a new connection to serve the new state.

Workers are told apart by gunicorn's access log (its `%(p)s` atom is the worker's pid), so
"both workers answered" is checked, not assumed; nothing is added to the app for it.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection

from agentconfig.core.bucketing import bucket
from tests import factories
from tests.deployments.canary_helpers import start

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "/api/v1/agents/support-bot/config"
# After the command returns, every worker must have applied it within this time.
PROPAGATION_SECONDS = 1.0
WARM_REQUESTS = 20
CHECK_REQUESTS = 40
# Upper bound when a worker has not answered yet (gunicorn spreads connections by chance).
MAX_REQUESTS = 200
BREAK_GLASS = "multiprocess test"


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _environment() -> dict[str, str]:
    """The server's and the CLI's environment: the test database, test settings, the
    default refresh interval, and CACHE_URL only if this run has one."""
    ours = ("DATABASE_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE", "AGENTCONFIG_REFRESH_INTERVAL")
    env = {name: value for name, value in os.environ.items() if name not in ours}
    env["DJANGO_SETTINGS_MODULE"] = "agentconfig.settings.test"
    env["DATABASE_URL"] = _database_url()
    if os.environ.get("CACHE_URL"):
        env["CACHE_URL"] = os.environ["CACHE_URL"]
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Server:
    port: int
    access_log: Path
    logged: int = 0  # access-log lines already attributed to earlier requests

    def get(self, path: str, key: str | None = None, **params: str) -> Answer:
        # A new connection per request, so gunicorn hands requests to either worker.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            conn.request("GET", f"{path}?{urlencode(params)}" if params else path, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, json.loads(response.read() or b"{}"))
        finally:
            conn.close()

    def workers_since_last_call(self, requests: int) -> collections.Counter[str]:
        """Worker pid -> requests answered, over the `requests` made since the last call."""
        expected = self.logged + requests
        deadline = time.monotonic() + 5
        while True:
            lines = self.access_log.read_text().splitlines()
            # A worker logs a request just after sending its answer: wait for the lines.
            if len(lines) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(lines) >= expected, f"{expected} requests made, {len(lines)} logged"
        answered_by = collections.Counter(line.split()[0] for line in lines[self.logged :])
        self.logged = len(lines)
        return answered_by


@pytest.fixture
def server(transactional_db, tmp_path) -> Iterator[Server]:
    """A two-worker gunicorn on the test database; always terminated."""
    port = _free_port()
    access_log = tmp_path / "access.log"
    access_log.touch()
    command = [
        *(sys.executable, "-m", "gunicorn", "agentconfig.wsgi"),
        *("--workers", "2", "--bind", f"127.0.0.1:{port}"),
        *("--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s"),
        *("--log-level", "warning", "--graceful-timeout", "2"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=_environment())
    try:
        started = Server(port, access_log)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"gunicorn exited with {process.returncode}"
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            try:
                if started.get("/healthz").status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        started.workers_since_last_call(1)
        yield started
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def manage(*args: str) -> str:
    """Run a management command in its own process, as an operator would; its stdout."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def serve_everywhere(
    server: Server,
    request: Callable[[int], Answer],
    expected: Callable[[Answer], bool],
    at_least: int,
) -> collections.Counter[str]:
    """Make `at_least` requests, and more until both workers answered; each must be
    `expected`. Returns how many requests each worker answered."""
    answered_by: collections.Counter[str] = collections.Counter()
    made = 0
    while made < at_least or len(answered_by) < 2:
        assert made < MAX_REQUESTS, f"only {dict(answered_by)} answered {made} requests"
        batch = at_least if made == 0 else 10
        for index in range(made, made + batch):
            answer = request(index)
            assert expected(answer), f"request {index + 1}: {answer}"
        made += batch
        answered_by += server.workers_since_last_call(batch)
    return answered_by


def version_of(answer: Answer) -> int | None:
    return answer.body["version"]["number"] if answer.status == 200 else None


def served_version(number: int) -> Callable[[Answer], bool]:
    return lambda answer: answer.status == 200 and version_of(answer) == number


def change_then_check(
    server: Server,
    request: Callable[[int], Answer],
    before: Callable[[Answer], bool],
    command: tuple[str, ...],
    after: Callable[[Answer], bool],
) -> str:
    """Warm both workers on `before`, run `command`, wait, and require `after` everywhere."""
    # The test's own setup reaches the workers through the feed too, in the same time.
    time.sleep(PROPAGATION_SECONDS)
    serve_everywhere(server, request, before, at_least=WARM_REQUESTS)
    output = manage(*command)
    time.sleep(PROPAGATION_SECONDS)
    serve_everywhere(server, request, after, at_least=CHECK_REQUESTS)
    return output


@pytest.mark.django_db(transaction=True)
def test_cli_deploy__two_warm_workers__every_request_serves_the_new_version(server):
    # Given v1 served by both workers
    agent, production = factories.live_agent()
    factories.create_version(agent)
    key = factories.create_api_key(production)[1]

    # When v2 is deployed from the CLI, and a second has passed since it returned
    output = change_then_check(
        server,
        lambda _: server.get(CONFIG, key),
        before=served_version(1),
        command=(
            *("deploy", "support-bot", "2", "--environment", "production"),
            *("--reason", "ship v2", "--break-glass", BREAK_GLASS),
        ),
        # Then every request, on both workers, gets v2
        after=served_version(2),
    )
    assert "Deployed support-bot v2 to production (was v1)" in output


@pytest.mark.django_db(transaction=True)
def test_cli_rollback__two_warm_workers__every_request_serves_the_previous_version(server):
    # Given v2 served by both workers, v1 before it
    agent, production = factories.live_agent()
    factories.deploy(factories.create_version(agent), production)
    key = factories.create_api_key(production)[1]

    # When an operator rolls back from the CLI, and a second has passed since it returned
    output = change_then_check(
        server,
        lambda _: server.get(CONFIG, key),
        before=served_version(2),
        command=("rollback", "support-bot", "--environment", "production", "--reason", "broke"),
        # Then every request, on both workers, gets v1
        after=served_version(1),
    )
    assert "from v2 to v1" in output


@pytest.mark.django_db(transaction=True)
def test_cli_canary_abort__two_warm_workers__canary_users_get_stable(server):
    # Given a 50 % canary of v2 over stable v1, and users the canary routes to v2
    agent, production = factories.live_agent()
    rollout = start(factories.create_version(agent), production, percent=50)
    candidates = (f"user-{n}" for n in range(10_000))
    users = [u for u in candidates if bucket(rollout.salt, u) < rollout.basis_points][:20]
    key = factories.create_api_key(production)[1]

    def request(index: int) -> Answer:
        return server.get(CONFIG, key, user_id=users[index % len(users)])

    # When the canary is aborted from the CLI, and a second has passed since it returned
    change_then_check(
        server,
        request,
        before=lambda a: served_version(2)(a) and a.body["track"] == "canary",
        command=(
            *("canary", "support-bot", "--environment", "production"),
            *("--reason", "errors up", "--abort"),
        ),
        # Then every one of them, on both workers, gets the stable v1
        after=lambda a: served_version(1)(a) and a.body["track"] == "stable",
    )


@pytest.mark.django_db(transaction=True)
def test_cli_revoke_api_key__two_warm_workers__every_request_with_it_401(server):
    # Given a key both workers have accepted, and another key of the environment
    _, production = factories.live_agent()
    revoked = factories.create_api_key(production, name="runtime-eu")[1]
    kept = factories.create_api_key(production, name="runtime-us")[1]

    # When the key is revoked from the CLI, and a second has passed since it returned
    output = change_then_check(
        server,
        lambda _: server.get(CONFIG, revoked),
        before=served_version(1),
        command=("revoke_api_key", "runtime-eu", "--reason", "leaked in a log"),
        # Then every request with it, on both workers, is refused
        after=lambda a: a.status == 401 and a.body["error"]["code"] == "invalid_api_key",
    )
    assert "Revoked API key 'runtime-eu'" in output
    # And the other key is still served by both
    serve_everywhere(server, lambda _: server.get(CONFIG, kept), served_version(1), at_least=10)
