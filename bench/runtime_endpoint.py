"""Benchmark of GET /api/v1/agents/<slug>/config against GET /healthz on one gunicorn.

Run from the project folder with the project's virtualenv:

    .venv/bin/python bench/runtime_endpoint.py

By itself it: drops and recreates a PostgreSQL database for the bench, migrates it with
production settings, creates an agent with a ~3,000-word prompt through the services and
the real management commands (deploy, create_api_key), starts gunicorn on 127.0.0.1,
warms up, measures the scenarios in interleaved rounds of a few seconds, measures how long
a deploy takes to reach both gunicorn workers, repeats the endpoint on a second gunicorn
without a cache (the database path), prints a table, writes bench/results/latest.json,
and always stops gunicorn, drops the database and deletes its Redis keys (try/finally).
About 70 s with the defaults.

Absolute numbers on a small shared machine move between runs; compare the ratios
(endpoint / healthz) measured in the same run. bench/README.md explains the numbers.

Invariants:
- Only loopback addresses are contacted; the script refuses any other host.
- Every loop is bounded by a deadline or a count; every subprocess has a timeout.
- The only database dropped is the bench database, whose name must contain "bench".
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    import psycopg
    import redis
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on how the script is started
    sys.exit(
        f"bench/runtime_endpoint.py needs the project's virtualenv ({exc}). "
        "Run it as: .venv/bin/python bench/runtime_endpoint.py"
    )

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
HOST = "127.0.0.1"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AGENT_SLUG = "bench-agent"
CONFIG_PATH = f"/api/v1/agents/{AGENT_SLUG}/config"
HEALTH_PATH = "/healthz"
WORKER_HEADER = "X-Bench-Worker"
# Keys the runtime cache writes (Django adds ":<version>:" in front).
CACHE_KEY_PATTERN = "*agentconfig:rt:*"
PROMPT_WORDS = 3000
PROMPT_VOCABULARY = (
    "customer account billing invoice refund policy order shipping delivery warranty "
    "answer clearly politely briefly escalate verify identity confirm summarise apologise "
    "never always only when if the a an to of for with without before after during "
    "support agent human team ticket priority urgent routine request question issue "
    "product subscription plan upgrade downgrade cancel renew payment method card bank "
    "transfer receipt address email phone chat language tone friendly professional "
    "concise accurate helpful safe private data personal information share store"
)

# Runs inside `manage.py shell -c`: the agent and two versions through the real services.
SEED_SCRIPT = """
import json, os
from agentconfig.actors import Actor
from versions.services import create_agent, create_version

seed = json.loads(open(os.environ["BENCH_SEED_FILE"], encoding="utf-8").read())
actor = Actor.system("bench")
agent = create_agent(slug=seed["slug"], name="Bench agent", actor=actor)
for config, description in seed["versions"]:
    version = create_version(
        agent=agent, actor=actor, config=config, change_description=description, source="demo"
    )
    print(version.version_number)
"""

# Runs inside `manage.py shell -c` with --profile: each path through Django's real WSGI
# handler in one process, no HTTP and no load generator, first timed and then profiled.
PROFILE_SCRIPT = """
import cProfile, io, json, os, pstats, sys, time
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import connection
from deployments import runtime

app = get_wsgi_application()
paths = json.loads(os.environ["BENCH_PROFILE_PATHS"])
count = int(os.environ["BENCH_PROFILE_COUNT"])
raw_key = os.environ["BENCH_API_KEY"]

def call(path, headers):
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, **headers,
    }
    response = app(environ, lambda status, headers, exc_info=None: None)
    b"".join(response)
    response.close()  # fires request_finished, as gunicorn does after each response

def timed(label, fn):
    # Best and median of 7 batches: other processes on the cores inflate single batches.
    for _ in range(20):
        fn()
    batch = max(1, count // 7)
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(batch):
            fn()
        runs.append((time.perf_counter() - started) / batch * 1e6)
    runs.sort()
    print(f"  {label:<52} best {runs[0]:6.0f} us   median {runs[3]:6.0f} us")

def select_1():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")

entry, generation = runtime.lookup(raw_key, os.environ["BENCH_AGENT"])
print("in-process cost per request (no HTTP, no load generator):")
for name, path, headers in paths:
    timed(f"{name} through the WSGI handler", lambda: call(path, headers))
timed("runtime.lookup (MGET key entry + generation)",
      lambda: runtime.lookup(raw_key, os.environ["BENCH_AGENT"]))
timed("runtime.get_document (GET document)",
      lambda: runtime.get_document(entry, os.environ["BENCH_AGENT"], generation))
timed("  of which: new redis.Redis client per cache call", lambda: cache._cache.get_client())
timed("SELECT 1 on the persistent connection", select_1)
for name, path, headers in paths:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(count):
        call(path, headers)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(10)
    print(f"=== cProfile, {name}, {count} requests, by own time ===")
    print("\\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))
"""

# wrk runs this once at the end: exact percentiles and error counts as one JSON line.
WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


class BenchError(RuntimeError):
    """A step of the bench failed; the message says which and what to check."""


# --- results ----------------------------------------------------------------------------


@dataclass
class Sample:
    """One round of one scenario: what the load generator saw in a few seconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    response_bytes: int


@dataclass
class Measurement:
    """One scenario over all its rounds; ratios are paired with the same round's healthz."""

    scenario: str
    description: str
    server_cache: str
    expected_status: int
    tool: str
    rounds: int
    requests: int
    seconds: float
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    response_bytes: int
    rps_ratio_to_healthz: float | None = None
    rps_ratio_range: tuple[float, float] | None = None
    p50_ratio_to_healthz: float | None = None
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Visibility:
    old_version: int
    new_version: int
    deploy_command_s: float
    workers_seen: list[str]
    # Per worker: ms after the deploy command returned from which every response of
    # that worker showed the new version (negative: already before it returned).
    visible_after_return_ms: dict[str, float | None]
    both_workers_visible_after_return_ms: float | None
    first_new_after_command_start_ms: float | None
    stale_responses_sent_after_return: int
    polls: int
    polls_per_worker: dict[str, int]
    errors: int
    notes: list[str] = field(default_factory=list)


# --- safety and environment -----------------------------------------------------------


def require_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise BenchError(f"{what} must point at a loopback address, not {host!r} ({url}).")


def bench_database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def django_env(database_url: str, cache_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="agentconfig.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=HOST,
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        CACHE_URL=cache_url,
        LOG_LEVEL="WARNING",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("DEBUG", None)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    """Run a command in the project folder; its stdout, or BenchError with its stderr."""
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None
    if done.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr.strip()}"
        )
    return done.stdout


def manage(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    return run([sys.executable, "manage.py", *args], env, timeout, f"manage.py {args[0]}")


# --- database and cache ---------------------------------------------------------------


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def clear_runtime_cache(cache_url: str) -> int:
    """Delete the runtime cache's keys from the bench's Redis database; how many."""
    client = redis.Redis.from_url(cache_url, socket_timeout=5)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=CACHE_KEY_PATTERN, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    client.close()
    return deleted


# --- demo data ---------------------------------------------------------------------------


def system_prompt(words: int, revision: int) -> str:
    """A deterministic, prose-like system prompt of about `words` words."""
    rng = random.Random(20240601)
    vocabulary = PROMPT_VOCABULARY.split()
    paragraphs = [
        f"You are the support assistant for Example Shop (prompt revision {revision}). "
        "Follow the rules below in order; when two rules conflict, the earlier one wins."
    ]
    count = len(paragraphs[0].split())
    section = 0
    while count < words:
        section += 1
        lines = [f"## Section {section}"]
        for rule in range(1, 9):
            sentence = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(10, 22)))
            lines.append(f"{rule}. {sentence.capitalize()}.")
        paragraph = "\n".join(lines)
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return "\n\n".join(paragraphs)


def seed_versions() -> list[tuple[dict[str, Any], str]]:
    base = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 1024,
        "tools": ["lookup_order", "create_ticket", "refund_status"],
        "guardrails": {"max_turns": 20, "pii_redaction": True, "blocked_topics": ["medical"]},
    }
    return [
        ({**base, "system_prompt": system_prompt(PROMPT_WORDS, 1)}, "bench: first version"),
        ({**base, "system_prompt": system_prompt(PROMPT_WORDS, 2)}, "bench: second version"),
    ]


def create_demo_data(env: dict[str, str], workdir: Path) -> str:
    """Agent v1 (deployed to production) and v2 (not yet); the API key's plaintext."""
    seed_file = workdir / "seed.json"
    seed_file.write_text(
        json.dumps({"slug": AGENT_SLUG, "versions": seed_versions()}), encoding="utf-8"
    )
    output = manage(
        ["shell", "--no-imports", "-c", SEED_SCRIPT], {**env, "BENCH_SEED_FILE": str(seed_file)}
    )
    numbers = [line for line in output.split() if line.isdigit()]
    if numbers != ["1", "2"]:
        raise BenchError(f"expected versions 1 and 2 to be created, got {output!r}.")
    manage(["deploy", AGENT_SLUG, "1", "--environment", "production", "--reason", "bench: v1"], env)
    output = manage(["create_api_key", "--environment", "production", "--name", "bench"], env)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines or not lines[-1].startswith("acfg_"):
        raise BenchError(f"create_api_key printed no key on its last line: {output!r}")
    return lines[-1]


# --- gunicorn ------------------------------------------------------------------------------


class Gunicorn:
    """One gunicorn master (and its workers) on 127.0.0.1, stopped by its own pid."""

    def __init__(self, env: dict[str, str], port: int, workers: int, threads: int, log: Path):
        self.port = port
        self.log = log
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.worker_pid_wsgi:application",
            f"--bind={HOST}:{port}",
            f"--workers={workers}",
            "--worker-class=gthread",
            f"--threads={threads}",
            "--graceful-timeout=5",
            "--log-level=warning",
        ]
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = request(self.port, HEALTH_PATH, {})
                if status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()

    def tail(self, lines: int = 30) -> str:
        self._log_file.flush()
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def request(
    port: int, path: str, headers: dict[str, str], timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


# --- load generators ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    headers: dict[str, str]
    expected_status: int


def check_scenario(port: int, scenario: Scenario) -> dict[str, str]:
    """One request first: a scenario that answers the wrong status is not measured."""
    status, headers, body = request(port, scenario.path, scenario.headers)
    if status != scenario.expected_status:
        raise BenchError(
            f"{scenario.name}: expected HTTP {scenario.expected_status}, got {status}: "
            f"{body[:300]!r}"
        )
    return headers


def run_wrk(
    wrk: str, lua: Path, port: int, scenario: Scenario, duration: float, args: argparse.Namespace
) -> Sample:
    cmd = [
        wrk,
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout=5s",
        f"--script={lua}",
    ]
    for name, value in scenario.headers.items():
        cmd.append(f"--header={name}: {value}")
    cmd.append(f"http://{HOST}:{port}{scenario.path}")
    output = run(cmd, dict(os.environ), duration + 30, f"wrk ({scenario.name})")
    line = next((x for x in output.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary for {scenario.name}:\n{output}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    seconds = data["duration_us"] / 1e6
    return Sample(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1),
        p50_ms=round(data["p50_us"] / 1000, 3),
        p90_ms=round(data["p90_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3),
        max_ms=round(data["max_us"] / 1000, 3),
        errors=sum(data[k] for k in data if k.startswith("errors_")),
        response_bytes=round(data["bytes"] / max(1, data["requests"])),
    )


def run_python_load(
    port: int, scenario: Scenario, duration: float, args: argparse.Namespace
) -> Sample:
    """Fallback when wrk is missing: threads with one keep-alive connection each."""
    deadline = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(args.connections)]
    errors = [0] * args.connections
    sizes = [0] * args.connections

    def worker(index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
            started = time.perf_counter()
            try:
                conn.request("GET", scenario.path, headers=scenario.headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = None
                continue
            latencies[index].append(time.perf_counter() - started)
            sizes[index] += len(body)
            if response.status != scenario.expected_status:
                errors[index] += 1
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 10)
    seconds = time.monotonic() - started
    merged = sorted(x for per_thread in latencies for x in per_thread)
    count = len(merged)

    def pct(p: float) -> float:
        if not merged:
            return float("nan")
        return round(merged[min(count - 1, int(p / 100 * count))] * 1000, 3)

    return Sample(
        requests=count,
        seconds=round(seconds, 3),
        rps=round(count / seconds, 1),
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=pct(100),
        errors=sum(errors),
        response_bytes=round(sum(sizes) / max(1, count)),
    )


class Load:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.wrk = None if args.python_load else shutil.which("wrk")
        self.lua = workdir / "report.lua"
        self.lua.write_text(WRK_REPORT_LUA, encoding="utf-8")
        if self.wrk:
            self.tool = f"wrk -t{args.wrk_threads} -c{args.connections}"
        else:
            self.tool = f"python http.client, {args.connections} keep-alive connections"

    def sample(self, port: int, scenario: Scenario, duration: float) -> Sample:
        if self.wrk:
            return run_wrk(self.wrk, self.lua, port, scenario, duration, self.args)
        return run_python_load(port, scenario, duration, self.args)


def measure_interleaved(
    load: Load,
    port: int,
    scenarios: list[Scenario],
    server_cache: str,
    rounds: int,
    round_s: float,
    say: Any,
) -> list[Measurement]:
    """Short rounds, scenarios alternating, so every scenario meets the same background load.

    The machine's cores are shared with other work; a 10 s run of A then a 10 s run of B
    compares A and B under different neighbours. Alternating rounds (A B C, C B A, ...)
    and taking ratios within each round keeps that noise out of the ratios.
    """
    samples: dict[str, list[Sample]] = {s.name: [] for s in scenarios}
    for index in range(rounds):
        order = scenarios if index % 2 == 0 else list(reversed(scenarios))
        for scenario in order:
            samples[scenario.name].append(load.sample(port, scenario, round_s))
        say(
            f"  round {index + 1}/{rounds}: "
            + ", ".join(f"{name} {got[-1].rps:.0f}/s" for name, got in samples.items())
        )
    baseline = samples[scenarios[0].name]
    results = []
    for scenario in scenarios:
        got = samples[scenario.name]
        requests = sum(x.requests for x in got)
        seconds = sum(x.seconds for x in got)
        rps_ratios = [x.rps / b.rps for x, b in zip(got, baseline, strict=True) if b.rps]
        p50_ratios = [x.p50_ms / b.p50_ms for x, b in zip(got, baseline, strict=True) if b.p50_ms]
        results.append(
            Measurement(
                scenario=scenario.name,
                description=scenario.description,
                server_cache=server_cache,
                expected_status=scenario.expected_status,
                tool=load.tool,
                rounds=len(got),
                requests=requests,
                seconds=round(seconds, 2),
                rps=round(requests / seconds, 1) if seconds else 0.0,
                rps_min=min(x.rps for x in got),
                rps_max=max(x.rps for x in got),
                p50_ms=round(statistics.median(x.p50_ms for x in got), 3),
                p99_ms=round(statistics.median(x.p99_ms for x in got), 3),
                max_ms=max(x.max_ms for x in got),
                errors=sum(x.errors for x in got),
                response_bytes=round(statistics.median(x.response_bytes for x in got)),
                rps_ratio_to_healthz=round(statistics.median(rps_ratios), 2)
                if rps_ratios
                else None,
                rps_ratio_range=(round(min(rps_ratios), 2), round(max(rps_ratios), 2))
                if rps_ratios
                else None,
                p50_ratio_to_healthz=round(statistics.median(p50_ratios), 2)
                if p50_ratios
                else None,
                samples=got,
            )
        )
    return results


# --- deploy visibility -----------------------------------------------------------------------


def measure_visibility(
    port: int, api_key: str, env: dict[str, str], old: int, new: int, limit_s: float
) -> Visibility:
    """Deploy `new` with manage.py while pollers record which worker served which version."""
    # (sent, received, worker, version or None, status); list.append is atomic.
    records: list[tuple[float, float, str, int | None, int]] = []
    errors = [0]
    stop = threading.Event()
    hard_deadline = time.monotonic() + limit_s + 30
    headers = {"Authorization": f"Bearer {api_key}", "Connection": "close"}

    def poll() -> None:
        # A new connection per request, so the kernel hands requests to both workers.
        while not stop.is_set() and time.monotonic() < hard_deadline:
            sent = time.monotonic()
            try:
                status, response_headers, body = request(port, CONFIG_PATH, headers, timeout=2)
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                time.sleep(0.01)
                continue
            received = time.monotonic()
            version = json.loads(body)["version"]["number"] if status == 200 else None
            worker = response_headers.get(WORKER_HEADER.lower(), "?")
            records.append((sent, received, worker, version, status))
            time.sleep(0.001)

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for thread in pollers:
        thread.start()
    notes: list[str] = []
    try:
        deadline = time.monotonic() + 3
        while len({r[2] for r in records}) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        if len({r[2] for r in records}) < 2:
            notes.append("only one worker answered the pollers before the deploy")
        command_started = time.monotonic()
        manage(
            ["deploy", AGENT_SLUG, str(new), "--environment", "production", "--reason", "bench"],
            env,
        )
        returned = time.monotonic()
        deadline = returned + limit_s
        while time.monotonic() < deadline:
            after = [r for r in records if r[0] >= returned]
            workers = {r[2] for r in records}
            if all(any(r[2] == w and r[3] == new for r in after) for w in workers):
                break
            time.sleep(0.01)
        time.sleep(0.2)  # a little longer, to catch a worker flipping back to the old version
    finally:
        stop.set()
        for thread in pollers:
            thread.join(timeout=5)

    workers = sorted({r[2] for r in records})
    visible: dict[str, float | None] = {}
    for worker in workers:
        mine = sorted((r for r in records if r[2] == worker), key=lambda r: r[0])
        last_old = max((i for i, r in enumerate(mine) if r[3] != new), default=-1)
        if last_old + 1 < len(mine):
            visible[worker] = round((mine[last_old + 1][0] - returned) * 1000, 1)
        else:
            visible[worker] = None
    known = [v for v in visible.values() if v is not None]
    both = max(known) if known and len(known) == len(visible) else None
    first_new = min((r[1] for r in records if r[3] == new), default=None)
    stale = sum(1 for r in records if r[0] >= returned and r[3] != new)
    if any(r[4] != 200 for r in records):
        notes.append(f"{sum(1 for r in records if r[4] != 200)} polls answered other than 200")
    return Visibility(
        old_version=old,
        new_version=new,
        deploy_command_s=round(returned - command_started, 3),
        workers_seen=workers,
        visible_after_return_ms=visible,
        both_workers_visible_after_return_ms=both,
        first_new_after_command_start_ms=(
            None if first_new is None else round((first_new - command_started) * 1000, 1)
        ),
        stale_responses_sent_after_return=stale,
        polls=len(records),
        polls_per_worker={w: sum(1 for r in records if r[2] == w) for w in workers},
        errors=errors[0],
        notes=notes,
    )


# --- profile ---------------------------------------------------------------------------------


def profile_in_process(
    env: dict[str, str], api_key: str, scenarios: list[Scenario], count: int
) -> str:
    """Per-request cost of each scenario inside one Django process, and its top functions."""
    paths = [
        (s.name, s.path, {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in s.headers.items()})
        for s in scenarios
    ]
    return manage(
        ["shell", "--no-imports", "-c", PROFILE_SCRIPT],
        {
            **env,
            "BENCH_PROFILE_PATHS": json.dumps(paths),
            "BENCH_PROFILE_COUNT": str(count),
            "BENCH_API_KEY": api_key,
            "BENCH_AGENT": AGENT_SLUG,
        },
        timeout=300,
    )


# --- reporting --------------------------------------------------------------------------------


def format_table(measurements: list[Measurement], visibility: Visibility | None) -> str:
    header = (
        f"{'scenario':<16} {'cache':<6} {'status':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'bytes':>6} {'errors':>6} {'rps/healthz (rounds)':>21} {'p50/healthz':>11}"
    )
    lines = [header, "-" * len(header)]
    for m in measurements:
        if m.rps_ratio_to_healthz is None or m.rps_ratio_range is None:
            rps_ratio = ""
        else:
            low, high = m.rps_ratio_range
            rps_ratio = f"{m.rps_ratio_to_healthz:.2f} ({low:.2f}-{high:.2f})"
        p50_ratio = "" if m.p50_ratio_to_healthz is None else f"{m.p50_ratio_to_healthz:.2f}"
        lines.append(
            f"{m.scenario:<16} {m.server_cache:<6} {m.expected_status:>6} {m.rps:>7.0f} "
            f"{m.p50_ms:>7.2f} {m.p99_ms:>7.2f} {m.response_bytes:>6} {m.errors:>6} "
            f"{rps_ratio:>21} {p50_ratio:>11}"
        )
    if visibility is not None:
        v = visibility
        both = v.both_workers_visible_after_return_ms
        lines.append("")
        lines.append(
            f"deploy v{v.old_version} -> v{v.new_version}: `manage.py deploy` ran "
            f"{v.deploy_command_s * 1000:.0f} ms (mostly Python and Django start-up); the first "
            f"v{v.new_version} answer came {v.first_new_after_command_start_ms} ms after it started"
        )
        if both is None:
            lines.append(
                f"  NOT served by every worker within the limit: {v.visible_after_return_ms}"
            )
        elif both <= 0:
            lines.append(
                f"  both workers serve v{v.new_version} already {-both:.0f} ms BEFORE the command "
                "returned (0 ms after it)"
            )
        else:
            lines.append(
                f"  both workers serve v{v.new_version} {both:.0f} ms after the command returned"
            )
        lines.append(
            f"  per worker, ms after return: {v.visible_after_return_ms}; stale answers to polls "
            f"sent after return: {v.stale_responses_sent_after_return}; polls per worker: "
            f"{v.polls_per_worker}; poll errors: {v.errors}"
        )
        lines.extend(f"  note: {note}" for note in v.notes)
    return "\n".join(lines)


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown"


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="measured seconds per scenario (all rounds)"
    )
    parser.add_argument("--round", type=int, default=1, help="seconds per round (whole seconds)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL used to create and drop the bench database",
    )
    parser.add_argument("--db-name", default="agentconfig_bench", help="bench database name")
    parser.add_argument(
        "--cache-url", default="redis://127.0.0.1:6379/14", help="Redis database for the bench"
    )
    parser.add_argument(
        "--python-load", action="store_true", help="use the Python load generator even with wrk"
    )
    parser.add_argument(
        "--no-cache-scenario",
        action="store_true",
        help="skip the second server with CACHE_URL=dummycache:// (the database path)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also time and cProfile N requests per scenario inside one Django process",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "latest.json", help="JSON results file"
    )
    args = parser.parse_args(argv)
    if "bench" not in args.db_name:
        parser.error("--db-name must contain 'bench': the script drops that database.")
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be between 1 and 60 seconds.")
    if not 1 <= args.round <= args.duration:
        parser.error("--round must be between 1 and --duration seconds.")
    if not 0 <= args.warmup <= 10:
        parser.error("--warmup must be between 0 and 10 seconds.")
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be between 1 and 256.")
    if not 0 <= args.profile <= 100_000:
        parser.error("--profile must be between 0 and 100000 requests.")
    return args


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks still stop gunicorn and drop the DB."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_loopback(args.admin_url, "--admin-url")
    require_loopback(args.cache_url, "--cache-url")
    database_url = bench_database_url(args.admin_url, args.db_name)
    rounds = max(1, round(args.duration / args.round))
    started = time.monotonic()
    load_before = os.getloadavg()
    servers: list[Gunicorn] = []
    measurements: list[Measurement] = []
    visibility: Visibility | None = None
    profile_output = ""
    workdir = Path(tempfile.mkdtemp(prefix="agentconfig-bench-"))
    log = workdir / "gunicorn.log"
    load = Load(args, workdir)

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    if load.wrk is None and not args.python_load:
        say(
            "wrk is not installed, so the Python load generator runs instead; it needs more of "
            "the 2 cores itself, so absolute numbers drop (install: apt-get install -y wrk)."
        )
    if load_before[0] > 0.5:
        say(
            f"note: load average is {load_before[0]:.1f} before starting: other processes use the "
            "CPU. Ratios are paired per round to limit the effect; expect wider ranges."
        )

    def start_server(env: dict[str, str]) -> Gunicorn:
        server = Gunicorn(env, free_port(), args.workers, args.threads, log)
        servers.append(server)
        server.wait_ready()
        return server

    def warm_up(server: Gunicorn, scenarios: list[Scenario]) -> None:
        for scenario in scenarios:
            check_scenario(server.port, scenario)
            if args.warmup:
                load.sample(server.port, scenario, args.warmup)

    try:
        with terminate_as_interrupt():
            say(f"recreating database {args.db_name}; clearing runtime keys in {args.cache_url}")
            recreate_database(args.admin_url, args.db_name)
            clear_runtime_cache(args.cache_url)
            env = django_env(database_url, args.cache_url)
            say("manage.py migrate (production settings)")
            manage(["migrate", "--noinput"], env, timeout=300)
            say(f"demo data: agent {AGENT_SLUG}, ~{PROMPT_WORDS}-word prompt, v1 in production")
            api_key = create_demo_data(env, workdir)
            auth = {"Authorization": f"Bearer {api_key}"}

            server = start_server(env)
            say(
                f"gunicorn on {HOST}:{server.port} ({args.workers} gthread workers x "
                f"{args.threads} threads, CACHE_URL={args.cache_url}); warming up"
            )
            healthz = Scenario("healthz", "GET /healthz: SELECT 1 (baseline)", HEALTH_PATH, {}, 200)
            config_200 = Scenario(
                "config_200", "config endpoint, warm Redis cache", CONFIG_PATH, auth, 200
            )
            etag = check_scenario(server.port, config_200)["etag"]
            config_304 = Scenario(
                "config_304",
                "config endpoint with If-None-Match, warm Redis cache",
                CONFIG_PATH,
                {**auth, "If-None-Match": etag},
                304,
            )
            warm = [healthz, config_200, config_304]
            warm_up(server, warm)
            say(f"measuring {len(warm)} scenarios: {rounds} rounds of {args.round} s each")
            measurements += measure_interleaved(
                load, server.port, warm, "redis", rounds, args.round, say
            )
            if args.profile:
                say(f"profiling {args.profile} requests per scenario in one process")
                profile_output = profile_in_process(env, api_key, warm, args.profile)

            say("deploying v2 with manage.py deploy while polling both workers")
            visibility = measure_visibility(server.port, api_key, env, 1, 2, limit_s=5)
            server.stop()

            if not args.no_cache_scenario:
                uncached = start_server({**env, "CACHE_URL": "dummycache://"})
                say(f"gunicorn with CACHE_URL=dummycache:// on {HOST}:{uncached.port}; warming up")
                healthz_uncached = Scenario(
                    "healthz", "GET /healthz on the uncached server", HEALTH_PATH, {}, 200
                )
                config_db = Scenario(
                    "config_db",
                    "config endpoint, no cache: key and document from PostgreSQL",
                    CONFIG_PATH,
                    auth,
                    200,
                )
                cold = [healthz_uncached, config_db]
                warm_up(uncached, cold)
                say(f"measuring {len(cold)} scenarios: {rounds} rounds of {args.round} s each")
                measurements += measure_interleaved(
                    load, uncached.port, cold, "none", rounds, args.round, say
                )
                uncached.stop()
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        if log.exists() and log.stat().st_size:
            print(f"gunicorn log:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
        with contextlib.suppress(Exception):
            drop_database(args.admin_url, args.db_name)
        with contextlib.suppress(Exception):
            clear_runtime_cache(args.cache_url)
        shutil.rmtree(workdir, ignore_errors=True)
        say(f"stopped gunicorn, dropped {args.db_name}, deleted the bench's Redis keys")

    load_after = os.getloadavg()
    if profile_output:
        print(profile_output)
    table = format_table(measurements, visibility)
    print()
    print(table)
    print(
        f"\nrps/healthz: median of per-round ratios against the healthz run of the same round "
        f"and server (min-max over {rounds} rounds). Load average before/after: "
        f"{load_before[0]:.1f}/{load_after[0]:.1f}."
    )

    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "setup": {
            "gunicorn": f"{args.workers} gthread workers x {args.threads} threads",
            "load_generator": load.tool,
            "rounds": rounds,
            "round_s": args.round,
            "prompt_words": PROMPT_WORDS,
            "settings": "agentconfig.settings.production",
            "cache": args.cache_url,
        },
        "scenarios": [asdict(m) for m in measurements],
        "deploy_visibility": asdict(visibility) if visibility else None,
        "table": table.splitlines(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
