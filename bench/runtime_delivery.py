"""Runtime delivery benchmark: the config endpoint against a bare Django view, and propagation.

Run from the project folder with the project's virtualenv (granian and wrk installed):

    .venv/bin/python bench/runtime_delivery.py

In one run, on one server (granian in WSGI mode by default, or gunicorn with --server):

1. Setup: drops and recreates the PostgreSQL database `agentconfig_bench`, migrates it with
   `agentconfig.settings.production` (random SECRET_KEY, no CACHE_URL), and creates through
   the services and management commands: `canary-agent` (v1 stable, a 10 % canary of v2),
   `flags-agent` (one version with gated tools, five targeted flags), `small-agent`
   (2 versions) and `big-agent` (2,000 versions), and an API key (`create_api_key`).
2. Serves `bench.bare_view_wsgi:application`: the project's deployed WSGI application plus
   `/bench/bare`, a plain Django view (full MIDDLEWARE) returning the endpoint's own body
   for a stable user of small-agent, so the endpoint and a trivial view share processes.
3. Measures six load scenarios in interleaved rounds with wrk (a Lua script draws a random
   user id, and for flags-agent random context, per request): bare view, canary-agent,
   flags-agent, small-agent, big-agent, and the 304 path; prints paired ratios.
4. Propagation: 50 `manage.py deploy` runs of small-agent (v1, v2, v1, ...); after each
   command returns, polls with new connections until every worker serves the new version.
   The same again on the default configuration a newcomer runs (`agentconfig.settings.dev`
   on a temporary SQLite file, no CACHE_URL).
5. Prints a table and writes bench/results/runtime_delivery.json; always stops the servers
   and drops the bench database (try/finally, also on Ctrl-C and SIGTERM).

It uses the app only through HTTP, `manage.py` commands and `manage.py shell -c`, so it keeps
working while the runtime path changes underneath. bench/README.md explains the numbers.

Invariants:
- Only loopback addresses are contacted; the script refuses any other host.
- Every loop is bounded by a deadline or a count; every subprocess has a timeout.
- The only database dropped is the bench database, whose name must contain "bench".
- Servers are stopped by the process-group id of the process this script started.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Exits with how to run the script when it is not started with the project's virtualenv.
from pg_databases import (
    BREAK_GLASS,
    LOOPBACK,
    bench_database_url,
    clean_environ,
    drop_database,
    production_env,
    recreate_database,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
HOST = "127.0.0.1"
WSGI_APP = "bench.bare_view_wsgi:application"
WORKER_HEADER = "X-Bench-Worker"
BARE_PATH = "/bench/bare"
HEALTH_PATH = "/healthz"
ENVIRONMENT = "production"
CANARY_AGENT, FLAGS_AGENT, SMALL_AGENT, BIG_AGENT = (
    "canary-agent",
    "flags-agent",
    "small-agent",
    "big-agent",
)
CANARY_PERCENT = 10
BIG_VERSIONS = 2000
# The 304 scenario and the bare view's body use this user: small-agent has no canary and
# no flags, so every user gets the stable answer.
STABLE_USER = "bench-stable-user"

PROMPT_VOCABULARY = (
    "customer account billing invoice refund policy order shipping delivery warranty "
    "answer clearly politely briefly escalate verify identity confirm summarise apologise "
    "never always only when if the a an to of for with without before after during "
    "support agent human team ticket priority urgent routine request question issue "
    "product subscription plan upgrade downgrade cancel renew payment method card bank "
    "transfer receipt address email phone chat language tone friendly professional "
    "concise accurate helpful safe private data personal information share store"
)

# Runs inside `manage.py shell -c`: agents, versions, flags, gates and the stable deploys,
# all through the project's services (deploys use break glass: production needs approval).
SEED_SCRIPT = """
import inspect, json, os, time
from django.db import transaction
from agentconfig.core.actors import Actor
from deployments.models import Environment
from deployments.services.releases import deploy_version
from flags.services.flags import create_flag, create_tool_gate, set_flag_enabled, set_flag_rules
from versions.services import create_agent, create_version

seed = json.loads(open(os.environ["BENCH_SEED_FILE"], encoding="utf-8").read())
actor = Actor.system("bench")
environment = Environment.objects.get(slug=seed["environment"])

def apply(service, **kwargs):
    # Production needs approval for what reaches runtimes; the bench breaks the glass
    # wherever a service offers it (which services do changes as the app evolves).
    if "break_glass" in inspect.signature(service).parameters:
        kwargs["break_glass"] = seed["break_glass"]
    return service(**kwargs)

agents, report = {}, {}
for spec in seed["agents"]:
    started = time.monotonic()
    with transaction.atomic():
        agent = create_agent(slug=spec["slug"], name=spec["name"], actor=actor)
        versions = [
            create_version(agent=agent, actor=actor, config=config, source="demo",
                           change_description=f"bench: version {number}")
            for number, config in enumerate(spec["versions"], start=1)
        ]
    if spec["deploy"]:
        apply(deploy_version, agent=agent, environment=environment, version=versions[-1],
              actor=actor, reason="bench: latest version")
    agents[spec["slug"]] = agent
    report[spec["slug"]] = {"versions": len(versions),
                            "seconds": round(time.monotonic() - started, 2)}
for spec in seed["flags"]:
    flag = apply(create_flag, key=spec["key"], kind=spec["kind"], actor=actor,
                 agent=agents[spec["agent"]], description="bench flag",
                 variants=spec.get("variants"))
    apply(set_flag_rules, flag=flag, environment=environment, actor=actor, rules=spec["rules"],
          default_variant=spec["default"], off_variant=spec["off"], reason="bench")
    apply(set_flag_enabled, flag=flag, environment=environment, enabled=True, actor=actor,
          reason="bench")
    if spec.get("gate"):
        apply(create_tool_gate, agent=agents[spec["agent"]], tool_name=spec["gate"], flag=flag,
              actor=actor)
print("BENCH_SEED " + json.dumps(report))
"""

# wrk: a random user (and, for flags-agent, random context) per request, and at the end one
# JSON line with exact percentiles and error counts.
WRK_LUA = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("bench_thread", counter)
end

local base = [[%(path)s]]
local random_user = %(random_user)s
local fixed_query = [[%(fixed_query)s]]
local with_context = %(context)s
local countries = %(countries)s
local app_versions = %(app_versions)s
local contexts = %(contexts)s

function init(args)
  math.randomseed(os.time() * 1000 + (bench_thread or 0) * 7919)
end

function request()
  local path = base
  if random_user then
    path = path .. "?user_id=u" .. math.random(1, 1000000)
  else
    path = path .. fixed_query
  end
  if not with_context then
    return wrk.format(nil, path)
  end
  path = path .. "&ctx.country=" .. countries[math.random(#countries)]
    .. "&ctx.app_version=" .. app_versions[math.random(#app_versions)]
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["X-Agentconfig-Context"] = contexts[math.random(#contexts)]
  return wrk.format(nil, path, headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"errors_connect":%%d,' ..
    '"errors_read":%%d,"errors_write":%%d,"errors_status":%%d,"errors_timeout":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""
# What flags-agent's requests draw from (the Lua script gets the same lists).
COUNTRIES = ("DE", "AT", "FR", "US", "GB", "NL")
APP_VERSIONS = ("2.3.9", "2.4.0", "2.5.1", "3.0.0")
CONTEXTS = (
    '{"plan":"free","seats":1}',
    '{"plan":"pro","seats":12}',
    '{"plan":"enterprise","seats":80}',
)


class BenchError(RuntimeError):
    """A step of the bench failed; the message says which and what to check."""


# --- results ----------------------------------------------------------------------------


@dataclass
class Sample:
    """One round of one scenario: what the load generator saw in about a second."""

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
    """One scenario over all its rounds; ratios are paired with the same round's bare view."""

    scenario: str
    description: str
    expected_status: int
    rounds: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    response_bytes: int
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Ratio:
    """Median of per-round ratios x/y, with their min and max, and the best rounds' ratio.

    `best` compares each side's least disturbed round (highest req/s, lowest p99): on a
    shared machine the quietest round is the closest to the code's own cost.
    """

    name: str
    metric: str
    median: float | None
    low: float | None
    high: float | None
    best: float | None


@dataclass
class Deploy:
    number: int
    to_version: int
    command_ms: float
    # ms from the command's return until the last worker answered the new version
    # (the receive time of that answer); None: not every worker within the limit.
    visible_ms: float | None
    per_worker_ms: dict[str, float]
    polls: int
    # Answers with the old version after the command returned, before that worker's first
    # new one: the change had not reached that worker yet (0: only routing delayed it).
    stale: int
    # Answers with the old version from a worker that had already served the new one.
    flip_backs: int
    errors: int


@dataclass
class Propagation:
    configuration: str
    settings: str
    database: str
    workers: list[str]
    background_rps: float
    deploys: list[Deploy]
    attempted: int
    visible: int
    p50_ms: float | None
    p90_ms: float | None
    max_ms: float | None
    command_p50_ms: float | None
    stale: int
    flip_backs: int
    notes: list[str] = field(default_factory=list)


# --- safety and environment -----------------------------------------------------------


def require_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise BenchError(f"{what} must point at a loopback address, not {host!r} ({url}).")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def dev_env(sqlite_file: Path) -> dict[str, str]:
    """What a newcomer runs: the dev settings' defaults, only the database file moved."""
    return {
        **clean_environ(),
        "DJANGO_SETTINGS_MODULE": "agentconfig.settings.dev",
        "DATABASE_URL": f"sqlite:///{sqlite_file}",
        "LOG_LEVEL": "WARNING",
    }


# Children of run() still running, so the cleanup can end them (by their own pid).
_CHILDREN: set[subprocess.Popen[str]] = set()
_CHILDREN_LOCK = threading.Lock()


def run(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    """Run a command in the project folder; its stdout, or BenchError with its stderr."""
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with _CHILDREN_LOCK:
        _CHILDREN.add(process)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=10)
        raise BenchError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(process)
    if process.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {process.returncode}): {' '.join(cmd)[:300]}\n"
            f"{stderr.strip()[-3000:]}"
        )
    return stdout


def end_children() -> None:
    """Kill the commands still running (a background setup step after Ctrl-C)."""
    with _CHILDREN_LOCK:
        running = list(_CHILDREN)
    for process in running:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def manage(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    return run([sys.executable, "manage.py", *args], env, timeout, f"manage.py {args[0]}")


def release(
    env: dict[str, str], command: str, slug: str, number: int, reason: str, *extra: str
) -> None:
    """`manage.py deploy|canary SLUG N` in production, with break glass (it needs approval)."""
    flags = ("--environment", ENVIRONMENT, "--break-glass", BREAK_GLASS, "--reason", reason)
    manage([command, slug, str(number), *flags, *extra], env)


# --- demo data ---------------------------------------------------------------------------


def system_prompt(slug: str, number: int, words: int) -> str:
    """A deterministic, prose-like prompt of about `words` words, distinct per version."""
    rng = random.Random(f"{slug}:{number}")
    vocabulary = PROMPT_VOCABULARY.split()
    lines = [f"You are {slug}, prompt revision {number}. Follow the rules below in order."]
    count = len(lines[0].split())
    rule = 0
    while count < words:
        rule += 1
        sentence = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(10, 22)))
        lines.append(f"{rule}. {sentence.capitalize()}.")
        count += len(lines[-1].split())
    return "\n".join(lines)


def agent_config(slug: str, number: int, words: int, tools: list[str]) -> dict[str, Any]:
    return {
        "system_prompt": system_prompt(slug, number, words),
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 1024,
        "tools": tools,
        "guardrails": {"max_turns": 20, "pii_redaction": True},
    }


FLAGS_TOOLS = ["search_docs", "lookup_order", "issue_refund", "beta_summarise", "escalate"]


def _when(*conditions: tuple[str, str, Any], variant: str) -> dict[str, Any]:
    """A rule serving `variant` when every (attribute, operator, value) holds."""
    keys = ("attribute", "operator", "value")
    return {"conditions": [dict(zip(keys, c, strict=True)) for c in conditions], "variant": variant}


def _split(**weights: int) -> dict[str, Any]:
    """A rule dealing users to variants by weight (basis points; they sum to 10000)."""
    return {"split": [{"variant": name, "weight": weight} for name, weight in weights.items()]}


def _flag(key: str, kind: str, rules: list[dict[str, Any]], default: str, **extra: Any) -> dict:
    return {"key": key, "kind": kind, "rules": rules, "default": default, "off": default, **extra}


def flag_specs() -> list[dict[str, Any]]:
    """Five flags of flags-agent in production: user lists, conditions, weighted splits."""
    staff = {"description": "staff", "users": [f"u{n}" for n in range(1, 201)], "variant": "on"}
    styles = [
        {"name": "concise", "value": "Answer in at most three sentences."},
        {"name": "detailed", "value": "Explain each step and cite the policy."},
        {"name": "friendly", "value": "Be warm; use the customer's first name."},
    ]
    limits = [
        {"name": "standard", "value": {"max_turns": 20, "max_tools_per_turn": 2}},
        {"name": "high", "value": {"max_turns": 50, "max_tools_per_turn": 5}},
    ]
    return [
        _flag(
            "new-checkout",
            "boolean",
            [
                staff,
                _when(("country", "in", ["DE", "AT"]), variant="on"),
                _split(on=2000, off=8000),
            ],
            "off",
        ),
        _flag(
            "beta-tools",
            "boolean",
            [_when(("app_version", "semver_gte", "2.4.0"), variant="on")],
            "off",
            gate="beta_summarise",
        ),
        _flag(
            "refunds",
            "boolean",
            [_when(("plan", "in", ["pro", "enterprise"]), variant="on"), _split(on=5000, off=5000)],
            "off",
            gate="issue_refund",
        ),
        _flag(
            "prompt-style",
            "string",
            [_split(concise=3334, detailed=3333, friendly=3333)],
            "concise",
            variants=styles,
        ),
        _flag(
            "limits",
            "json",
            [_when(("plan", "equals", "enterprise"), ("seats", "gte", 50), variant="high")],
            "standard",
            variants=limits,
        ),
    ]


def seed_data(args: argparse.Namespace, full: bool) -> dict[str, Any]:
    words = args.prompt_words
    base_tools = ["lookup_order", "create_ticket"]

    def agent(slug: str, count: int, deploy: bool, tools: list[str]) -> dict[str, Any]:
        name = slug.replace("-", " ").capitalize()
        versions = [agent_config(slug, n, words, tools) for n in range(1, count + 1)]
        return {"slug": slug, "name": name, "versions": versions, "deploy": deploy}

    agents = [agent(SMALL_AGENT, 2, True, base_tools)]
    flags: list[dict[str, Any]] = []
    if full:
        agents += [
            # canary-agent is deployed and canaried with the real commands afterwards.
            agent(CANARY_AGENT, 2, False, base_tools),
            agent(FLAGS_AGENT, 1, True, FLAGS_TOOLS),
            agent(BIG_AGENT, args.big_versions, True, base_tools),
        ]
        flags = [{**spec, "agent": FLAGS_AGENT} for spec in flag_specs()]
    return {
        "environment": ENVIRONMENT,
        "break_glass": BREAK_GLASS,
        "agents": agents,
        "flags": flags,
    }


def prepare_database(
    env: dict[str, str], args: argparse.Namespace, workdir: Path, full: bool, say: Callable
) -> tuple[str, dict[str, Any]]:
    """Migrate, seed and create the API key; (key plaintext, seed timings)."""
    label = "production/PostgreSQL" if full else "dev/SQLite"
    started = time.monotonic()
    manage(["migrate", "--noinput"], env, timeout=600)
    say(f"{label}: migrated in {time.monotonic() - started:.0f} s; seeding")
    seed_file = workdir / f"seed-{'full' if full else 'dev'}.json"
    seed_file.write_text(json.dumps(seed_data(args, full)), encoding="utf-8")
    output = manage(
        ["shell", "--no-imports", "-c", SEED_SCRIPT],
        {**env, "BENCH_SEED_FILE": str(seed_file)},
        timeout=900,
    )
    line = next((x for x in output.splitlines() if x.startswith("BENCH_SEED ")), None)
    if line is None:
        raise BenchError(f"the seed script printed no report: {output[-2000:]!r}")
    report: dict[str, Any] = json.loads(line.removeprefix("BENCH_SEED "))
    if full:
        release(env, "deploy", CANARY_AGENT, 1, "bench: stable v1")
        percent = ("--percent", str(CANARY_PERCENT))
        release(env, "canary", CANARY_AGENT, 2, "bench: canary of v2", *percent)
    key_args = ["create_api_key", "--environment", ENVIRONMENT, "--name", "bench"]
    # Key changes came to need a reason while the app moved on; ask the command itself.
    if "--reason" in manage(["create_api_key", "--help"], env):
        key_args += ["--reason", "bench: the load generator's key"]
    output = manage(key_args, env)
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    if not lines or not lines[-1].startswith("acfg_"):
        raise BenchError(f"create_api_key printed no key on its last line: {output!r}")
    report["total_seconds"] = round(time.monotonic() - started, 1)
    say(f"{label}: ready in {report['total_seconds']:.0f} s ({report})")
    return lines[-1], report


# --- servers ------------------------------------------------------------------------------


def server_description(args: argparse.Namespace) -> str:
    if args.server == "granian":
        return (
            f"granian --interface wsgi --workers {args.workers} --blocking-threads {args.threads}"
        )
    return f"gunicorn --worker-class gthread --workers {args.workers} --threads {args.threads}"


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    """The server's command line after `python -m`: the description plus bind and logging."""
    if args.server == "granian":
        extra = f"--host {HOST} --port {port} --no-ws --log-level warning"
    else:
        extra = f"--bind {HOST}:{port} --graceful-timeout 5 --log-level warning"
    return [*server_description(args).split(), *extra.split(), WSGI_APP]


class Server:
    """One granian or gunicorn master (and its workers) on 127.0.0.1, in its own group."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], label: str, log: Path):
        self.port = free_port()
        self.label = label
        self.log = log
        self.describe = server_description(args)
        cmd = [sys.executable, "-m", *server_command(args, self.port)]
        self._log_file = log.open("ab")
        # Its own session: stopping the group reaches the workers, and only them.
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.label} server exited with {self.process.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = request(self.port, HEALTH_PATH, {}, timeout=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.label} server did not answer /healthz in {timeout:.0f} s")

    def discover_workers(self, expected: int, timeout: float = 15) -> list[str]:
        """The worker pids, seen through the bench header on new connections."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        with concurrent.futures.ThreadPoolExecutor(max(2, expected)) as pool:
            while len(seen) < expected and time.monotonic() < deadline:
                futures = [
                    pool.submit(request, self.port, HEALTH_PATH, {"Connection": "close"})
                    for _ in range(max(2, expected))
                ]
                for future in futures:
                    with contextlib.suppress(OSError, http.client.HTTPException):
                        status, headers, _ = future.result(timeout=10)
                        if status == 200 and WORKER_HEADER.lower() in headers:
                            seen.add(headers[WORKER_HEADER.lower()])
        if not seen:
            raise BenchError(f"no response carried {WORKER_HEADER}: is {WSGI_APP} served?")
        return sorted(seen)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        # Workers left behind by a master that died first are in the same group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(ValueError):
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


def config_path(slug: str) -> str:
    return f"/api/v1/agents/{slug}/config"


# --- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    headers: dict[str, str]
    expected_status: int
    random_user: bool = True
    # With random_user False: the query string every request sends.
    fixed_query: str = ""
    # flags-agent: random ctx.country, ctx.app_version query parameters and context header.
    context: bool = False

    def example_path(self, rng: random.Random) -> tuple[str, dict[str, str]]:
        """One request as the load generator would send it."""
        headers = dict(self.headers)
        if not self.random_user:
            return self.path + self.fixed_query, headers
        path = f"{self.path}?user_id=u{rng.randint(1, 1_000_000)}"
        if self.context:
            path += (
                f"&ctx.country={rng.choice(COUNTRIES)}&ctx.app_version={rng.choice(APP_VERSIONS)}"
            )
            headers["X-Agentconfig-Context"] = rng.choice(CONTEXTS)
        return path, headers


def check_scenario(port: int, scenario: Scenario) -> None:
    """A few requests first: a scenario that answers the wrong status is not measured."""
    rng = random.Random(scenario.name)
    for _ in range(5):
        path, headers = scenario.example_path(rng)
        status, _, body = request(port, path, headers)
        if status != scenario.expected_status:
            raise BenchError(
                f"{scenario.name}: expected HTTP {scenario.expected_status} for {path}, got "
                f"{status}: {body[:300]!r}"
            )


def lua_list(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"[[{value}]]" for value in values) + "}"


class Load:
    """wrk with a generated Lua script per scenario, or threads with http.client."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.wrk = None if args.python_load else shutil.which("wrk")
        if self.wrk:
            self.tool = f"wrk -t{args.wrk_threads} -c{args.connections} (Lua: random user ids)"
        else:
            self.tool = f"python http.client, {args.connections} keep-alive connections"

    def lua(self, scenario: Scenario) -> Path:
        script = self.workdir / f"{scenario.name}.lua"
        if not script.exists():
            script.write_text(
                WRK_LUA
                % {
                    "path": scenario.path,
                    "random_user": "true" if scenario.random_user else "false",
                    "fixed_query": scenario.fixed_query,
                    "context": "true" if scenario.context else "false",
                    "countries": lua_list(COUNTRIES),
                    "app_versions": lua_list(APP_VERSIONS),
                    "contexts": lua_list(CONTEXTS),
                },
                encoding="utf-8",
            )
        return script

    def sample(self, port: int, scenario: Scenario, seconds: float) -> Sample:
        if self.wrk:
            return self._wrk(port, scenario, seconds)
        return self._python(port, scenario, seconds)

    def _wrk(self, port: int, scenario: Scenario, seconds: float) -> Sample:
        assert self.wrk is not None
        cmd = [
            self.wrk,
            f"-t{self.args.wrk_threads}",
            f"-c{self.args.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout=5s",
            f"--script={self.lua(scenario)}",
        ]
        for name, value in scenario.headers.items():
            cmd.append(f"--header={name}: {value}")
        cmd.append(f"http://{HOST}:{port}{scenario.path}")
        output = run(cmd, dict(os.environ), seconds + 30, f"wrk ({scenario.name})")
        line = next((x for x in output.splitlines() if x.startswith("WRK_JSON ")), None)
        if line is None:
            raise BenchError(f"wrk printed no summary for {scenario.name}:\n{output}")
        data = json.loads(line.removeprefix("WRK_JSON "))
        elapsed = data["duration_us"] / 1e6
        return Sample(
            requests=data["requests"],
            seconds=round(elapsed, 3),
            rps=round(data["requests"] / elapsed, 1),
            p50_ms=round(data["p50_us"] / 1000, 3),
            p90_ms=round(data["p90_us"] / 1000, 3),
            p99_ms=round(data["p99_us"] / 1000, 3),
            max_ms=round(data["max_us"] / 1000, 3),
            errors=sum(data[k] for k in data if k.startswith("errors_")),
            response_bytes=round(data["bytes"] / max(1, data["requests"])),
        )

    def _python(self, port: int, scenario: Scenario, seconds: float) -> Sample:
        connections = self.args.connections
        deadline = time.monotonic() + seconds
        latencies: list[list[float]] = [[] for _ in range(connections)]
        errors = [0] * connections
        sizes = [0] * connections

        def worker(index: int) -> None:
            rng = random.Random(f"{scenario.name}:{index}:{time.monotonic()}")
            conn: http.client.HTTPConnection | None = None
            while time.monotonic() < deadline:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=5)
                path, headers = scenario.example_path(rng)
                started = time.perf_counter()
                try:
                    conn.request("GET", path, headers=headers)
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
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 10)
        elapsed = time.monotonic() - started
        merged = sorted(x for per_thread in latencies for x in per_thread)
        count = len(merged)

        def pct(p: float) -> float:
            if not merged:
                return float("nan")
            return round(merged[min(count - 1, int(p / 100 * count))] * 1000, 3)

        return Sample(
            requests=count,
            seconds=round(elapsed, 3),
            rps=round(count / elapsed, 1),
            p50_ms=pct(50),
            p90_ms=pct(90),
            p99_ms=pct(99),
            max_ms=pct(100),
            errors=sum(errors),
            response_bytes=round(sum(sizes) / max(1, count)),
        )


def measure_interleaved(
    load: Load, port: int, scenarios: list[Scenario], rounds: int, round_s: float, say: Callable
) -> dict[str, list[Sample]]:
    """Short rounds, scenarios alternating (A B C …, … C B A), so noise hits all alike.

    The cores are shared with other work; ten seconds of A then ten of B would compare A
    and B under different neighbours. Ratios are then taken within each round.
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
    return samples


def summarise(scenario: Scenario, got: list[Sample]) -> Measurement:
    requests = sum(x.requests for x in got)
    seconds = sum(x.seconds for x in got)
    return Measurement(
        scenario=scenario.name,
        description=scenario.description,
        expected_status=scenario.expected_status,
        rounds=len(got),
        requests=requests,
        seconds=round(seconds, 2),
        rps=round(requests / seconds, 1) if seconds else 0.0,
        p50_ms=round(statistics.median(x.p50_ms for x in got), 3),
        p99_ms=round(statistics.median(x.p99_ms for x in got), 3),
        max_ms=max(x.max_ms for x in got),
        errors=sum(x.errors for x in got),
        response_bytes=round(statistics.median(x.response_bytes for x in got)),
        samples=got,
    )


def paired_ratio(name: str, metric: str, xs: list[Sample], ys: list[Sample], attr: str) -> Ratio:
    """Median (min-max) over rounds of x.attr / y.attr, the two measured in the same round."""
    values = [
        getattr(x, attr) / getattr(y, attr) for x, y in zip(xs, ys, strict=True) if getattr(y, attr)
    ]
    if not values:
        return Ratio(name, metric, None, None, None, None)
    pick = max if attr == "rps" else min
    best_y = pick(getattr(y, attr) for y in ys)
    best = pick(getattr(x, attr) for x in xs) / best_y if best_y else None
    return Ratio(
        name,
        metric,
        round(statistics.median(values), 3),
        round(min(values), 3),
        round(max(values), 3),
        None if best is None else round(best, 3),
    )


# --- propagation ---------------------------------------------------------------------------


def poll_once(port: int, api_key: str, rng: random.Random) -> tuple[float, str, int | None, int]:
    """One request on a new connection: (receive time, worker pid, version number, status)."""
    path = f"{config_path(SMALL_AGENT)}?user_id=p{rng.randint(1, 1_000_000)}"
    headers = {"Authorization": f"Bearer {api_key}", "Connection": "close"}
    status, response_headers, body = request(port, path, headers, timeout=3)
    received = time.monotonic()
    version = None
    if status == 200:
        version = json.loads(body)["version"]["number"]
    return received, response_headers.get(WORKER_HEADER.lower(), "?"), version, status


class BackgroundTraffic:
    """Steady requests on new connections while deploys run, like a server in service.

    An idle process may refresh its snapshot on the first request after a long pause; a
    busy one refreshes on its own schedule, so a change can land just after a refresh.
    This keeps the workers busy at about `rps` requests per second, spread by the kernel.
    """

    def __init__(self, port: int, api_key: str, rps: float, limit_s: float):
        self.port, self.api_key, self.rps = port, api_key, rps
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + limit_s
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        pause = 2 / self.rps
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
                poll_once(self.port, self.api_key, rng)
            self.stop_event.wait(pause)

    def __enter__(self) -> BackgroundTraffic:
        if self.rps > 0:
            for thread in self.threads:
                thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=5)


def measure_propagation(
    server: Server,
    api_key: str,
    env: dict[str, str],
    args: argparse.Namespace,
    configuration: str,
    deploys: int,
    say: Callable,
) -> Propagation:
    """Deploy small-agent v1, v2, v1 … and time until every worker serves each one."""
    workers = set(server.discover_workers(args.workers))
    initial_workers = sorted(workers)
    notes: list[str] = []
    if len(workers) < args.workers:
        notes.append(
            f"only {len(workers)} of {args.workers} workers answered before the deploys: "
            f"{sorted(workers)}"
        )
    results: list[Deploy] = []
    consecutive_misses = 0
    limit = args.propagation_timeout
    parallel = max(2, args.workers)
    rng = random.Random(configuration)
    total_budget = deploys * (limit + 30) + 60
    with (
        BackgroundTraffic(server.port, api_key, args.propagation_traffic, total_budget),
        concurrent.futures.ThreadPoolExecutor(parallel) as pool,
    ):
        for number in range(1, deploys + 1):
            target = 1 if number % 2 == 1 else 2  # small-agent starts at v2
            started = time.monotonic()
            release(env, "deploy", SMALL_AGENT, target, f"bench: propagation deploy {number}")
            returned = time.monotonic()
            seen_new: dict[str, float] = {}
            polls = stale = flip_backs = errors = 0
            deadline = returned + limit
            while time.monotonic() < deadline and polls < args.max_polls:
                futures = [
                    pool.submit(poll_once, server.port, api_key, rng) for _ in range(parallel)
                ]
                answers = []
                for future in futures:
                    polls += 1
                    try:
                        answers.append(future.result(timeout=10))
                    except (OSError, http.client.HTTPException, ValueError, KeyError):
                        errors += 1
                # In the order they were answered: two polls of one batch may reach the same
                # worker, and the later one may be the first to see the change.
                for received, worker, version, status in sorted(answers, key=lambda a: a[0]):
                    if status != 200:
                        errors += 1
                        continue
                    workers.add(worker)  # a respawned worker counts from now on
                    if version == target:
                        seen_new.setdefault(worker, round((received - returned) * 1000, 1))
                    elif worker in seen_new:
                        flip_backs += 1
                    else:
                        stale += 1
                if workers.issubset(seen_new):
                    break
            visible = max(seen_new.values()) if workers.issubset(seen_new) else None
            results.append(
                Deploy(
                    number=number,
                    to_version=target,
                    command_ms=round((returned - started) * 1000, 1),
                    visible_ms=visible,
                    per_worker_ms=seen_new,
                    polls=polls,
                    stale=stale,
                    flip_backs=flip_backs,
                    errors=errors,
                )
            )
            consecutive_misses = consecutive_misses + 1 if visible is None else 0
            if number % 10 == 0 or visible is None:
                shown = "NOT on every worker" if visible is None else f"{visible:.0f} ms"
                say(f"  {configuration}: deploy {number}/{deploys} -> v{target}: {shown}")
            if consecutive_misses >= args.max_misses:
                notes.append(
                    f"stopped after {number} deploys: {consecutive_misses} in a row were not "
                    f"served by every worker within {limit:g} s"
                )
                break
    return summarise_propagation(
        configuration, env, initial_workers, sorted(workers), results, args, notes
    )


def summarise_propagation(
    configuration: str,
    env: dict[str, str],
    initial_workers: list[str],
    workers: list[str],
    results: list[Deploy],
    args: argparse.Namespace,
    notes: list[str],
) -> Propagation:
    times = sorted(d.visible_ms for d in results if d.visible_ms is not None)
    commands = [d.command_ms for d in results]
    if workers != initial_workers:
        notes.append(f"workers changed during the deploys: {initial_workers} -> {workers}")
    missed = [d.number for d in results if d.visible_ms is None]
    if missed:
        notes.append(
            f"{len(missed)} deploys not served by every worker within "
            f"{args.propagation_timeout:g} s: {missed[:10]}"
        )
    return Propagation(
        configuration=configuration,
        settings=env["DJANGO_SETTINGS_MODULE"],
        database=env["DATABASE_URL"].split(":", 1)[0],
        workers=workers,
        background_rps=args.propagation_traffic,
        deploys=results,
        attempted=len(results),
        visible=len(times),
        p50_ms=round(statistics.median(times), 1) if times else None,
        p90_ms=round(times[min(len(times) - 1, int(0.9 * len(times)))], 1) if times else None,
        max_ms=times[-1] if times else None,
        command_p50_ms=round(statistics.median(commands), 1) if commands else None,
        stale=sum(d.stale for d in results),
        flip_backs=sum(d.flip_backs for d in results),
        notes=notes,
    )


# --- reporting --------------------------------------------------------------------------------


def fmt_ratio(ratio: Ratio) -> str:
    if ratio.median is None:
        return "n/a"
    best = "" if ratio.best is None else f"   best rounds {ratio.best:.2f}x"
    return f"{ratio.median:.2f}x ({ratio.low:.2f}-{ratio.high:.2f}){best}"


def format_table(
    measurements: list[Measurement], ratios: list[Ratio], propagations: list[Propagation]
) -> str:
    header = (
        f"{'scenario':<14} {'status':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'bytes':>6} {'errors':>6}  description"
    )
    lines = [header, "-" * len(header)]
    for m in measurements:
        lines.append(
            f"{m.scenario:<14} {m.expected_status:>6} {m.rps:>7.0f} {m.p50_ms:>7.2f} "
            f"{m.p99_ms:>7.2f} {m.response_bytes:>6} {m.errors:>6}  {m.description}"
        )
    if ratios:
        lines.append("")
        lines.append(
            "ratios: median of the per-round ratios (min-max), and best round / best round:"
        )
        for ratio in ratios:
            lines.append(f"  {ratio.name:<28} {ratio.metric:<4} {fmt_ratio(ratio)}")
    for p in propagations:
        lines.append("")
        lines.append(
            f"propagation, {p.configuration} ({p.settings}, {p.database}, "
            f"{len(p.workers)} workers, background {p.background_rps:g} req/s):"
        )
        if p.visible:
            lines.append(
                f"  {p.visible}/{p.attempted} deploys on every worker; after the command "
                f"returned: p50 {p.p50_ms:.0f} ms, p90 {p.p90_ms:.0f} ms, max {p.max_ms:.0f} ms "
                f"(`manage.py deploy` itself: p50 {p.command_p50_ms:.0f} ms); stale answers "
                f"after return {p.stale}, flip-backs {p.flip_backs}"
            )
        else:
            lines.append(f"  none of {p.attempted} deploys reached every worker in time")
        lines.extend(f"  note: {note}" for note in p.notes)
    return "\n".join(lines)


def git_output(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        if done.returncode == 0:
            return done.stdout.rstrip()  # not lstrip: porcelain lines start with a space
    return ""


def code_revision() -> dict[str, Any]:
    """HEAD, and which files outside bench/ differ from it (they are what was measured)."""
    changed = [
        line[3:]
        for line in git_output("status", "--porcelain").splitlines()
        if line[3:] and not line[3:].startswith("bench/")
    ]
    return {"head": git_output("rev-parse", "--short", "HEAD") or "unknown", "changed": changed}


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=6, help="measured seconds per scenario (all rounds)"
    )
    parser.add_argument("--round", type=int, default=1, help="seconds per round (whole seconds)")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--server", choices=("granian", "gunicorn"), default="granian", help="WSGI server"
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per worker (granian --blocking-threads, gunicorn gthread --threads)",
    )
    parser.add_argument("--deploys", type=int, default=50, help="propagation deploys (PostgreSQL)")
    parser.add_argument(
        "--dev-deploys", type=int, default=50, help="propagation deploys on dev/SQLite (0: skip)"
    )
    parser.add_argument(
        "--propagation-timeout", type=float, default=10, help="seconds to wait per deploy"
    )
    parser.add_argument(
        "--propagation-traffic",
        type=float,
        default=50,
        help="background req/s on the server during the deploys (0: idle workers)",
    )
    parser.add_argument(
        "--max-polls", type=int, default=5000, help="poll requests per deploy at most"
    )
    parser.add_argument(
        "--max-misses",
        type=int,
        default=3,
        help="stop the deploys after this many in a row were not seen by every worker",
    )
    parser.add_argument("--big-versions", type=int, default=BIG_VERSIONS, help="big-agent versions")
    parser.add_argument("--prompt-words", type=int, default=300, help="words per system prompt")
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL used to create and drop the bench database",
    )
    parser.add_argument("--db-name", default="agentconfig_bench", help="bench database name")
    parser.add_argument(
        "--python-load", action="store_true", help="use the Python load generator even with wrk"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "runtime_delivery.json",
        help="JSON results file",
    )
    args = parser.parse_args(argv)
    if "bench" not in args.db_name:
        parser.error("--db-name must contain 'bench': the script drops that database.")
    checks = [
        (1 <= args.duration <= 120, "--duration must be between 1 and 120 seconds."),
        (1 <= args.round <= args.duration, "--round must be between 1 and --duration seconds."),
        (0 <= args.warmup <= 10, "--warmup must be between 0 and 10 seconds."),
        (1 <= args.connections <= 256, "--connections must be between 1 and 256."),
        (1 <= args.workers <= 16, "--workers must be between 1 and 16."),
        (1 <= args.threads <= 64, "--threads must be between 1 and 64."),
        (1 <= args.deploys <= 500, "--deploys must be between 1 and 500."),
        (0 <= args.dev_deploys <= 500, "--dev-deploys must be between 0 and 500."),
        (0.5 <= args.propagation_timeout <= 120, "--propagation-timeout: 0.5 to 120 s."),
        (0 <= args.propagation_traffic <= 500, "--propagation-traffic: 0 to 500 req/s."),
        (1 <= args.max_polls <= 100_000, "--max-polls must be between 1 and 100000."),
        (1 <= args.max_misses <= 500, "--max-misses must be between 1 and 500."),
        (2 <= args.big_versions <= 10_000, "--big-versions must be between 2 and 10000."),
        (20 <= args.prompt_words <= 20_000, "--prompt-words must be between 20 and 20000."),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return args


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks still stop servers and drop the DB."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_tools(args: argparse.Namespace) -> None:
    module = "granian" if args.server == "granian" else "gunicorn"
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        raise BenchError(
            f"{module} is not installed in this virtualenv: "
            f".venv/bin/uv pip install --python .venv/bin/python {module}"
        )
    if (ROOT / ".env").exists():
        raise BenchError(
            f"{ROOT / '.env'} exists; the settings read it, so the bench would not measure the "
            "configuration it reports. Move it aside for the run."
        )


def scenarios_for(api_key: str, etag: str, big_versions: int) -> list[Scenario]:
    auth = {"Authorization": f"Bearer {api_key}"}
    return [
        Scenario(
            "bare",
            "(a) plain Django view, full MIDDLEWARE, JsonResponse of small-agent's body",
            BARE_PATH,
            {},
            200,
        ),
        Scenario(
            "canary",
            f"(b) canary-agent, random users ({CANARY_PERCENT} % get the canary)",
            config_path(CANARY_AGENT),
            auth,
            200,
        ),
        Scenario(
            "flags",
            "(c) flags-agent, random users and context, 5 flags, 2 gated tools",
            config_path(FLAGS_AGENT),
            auth,
            200,
            context=True,
        ),
        Scenario("small", "(d) small-agent, random users", config_path(SMALL_AGENT), auth, 200),
        Scenario(
            "big",
            f"(e) big-agent ({big_versions:,} versions), random users",
            config_path(BIG_AGENT),
            auth,
            200,
        ),
        Scenario(
            "not_modified",
            "(f) small-agent, one stable user, If-None-Match: its ETag",
            config_path(SMALL_AGENT),
            {**auth, "If-None-Match": etag},
            304,
            random_user=False,
            fixed_query=f"?user_id={STABLE_USER}",
        ),
    ]


def sanity_checks(port: int, api_key: str, say: Callable) -> dict[str, Any]:
    """What the scenarios serve, checked once: canary share, flags, big-agent's version."""
    auth = {"Authorization": f"Bearer {api_key}"}
    found: dict[str, Any] = {}
    canary = 0
    users = 400
    for n in range(users):
        status, _, body = request(port, f"{config_path(CANARY_AGENT)}?user_id=s{n}", auth)
        if status != 200:
            raise BenchError(f"canary-agent answered {status}: {body[:300]!r}")
        canary += json.loads(body).get("track") == "canary"
    found["canary_share_of_400_users"] = round(canary / users, 3)
    if not 0.03 <= canary / users <= 0.2:
        raise BenchError(f"{canary} of {users} users got canary-agent's canary, not ~10 %.")
    status, _, body = request(
        port,
        f"{config_path(FLAGS_AGENT)}?user_id=u7&ctx.country=DE&ctx.app_version=2.5.1",
        {**auth, "X-Agentconfig-Context": CONTEXTS[2]},
    )
    answer = json.loads(body)
    found["flags_evaluated"] = sorted(answer.get("flags", {}))
    found["flags_agent_tools_for_one_user"] = answer.get("config", {}).get("tools")
    if status != 200 or len(found["flags_evaluated"]) != 5:
        raise BenchError(f"flags-agent answered {status} with flags {found['flags_evaluated']}")
    status, _, body = request(port, f"{config_path(BIG_AGENT)}?user_id=u1", auth)
    found["big_agent_version"] = json.loads(body)["version"]["number"] if status == 200 else None
    say(f"checks: {found}")
    return found


def measure_load(
    server: Server,
    api_key: str,
    body_file: Path,
    load: Load,
    args: argparse.Namespace,
    rounds: int,
    say: Callable,
) -> tuple[list[Measurement], list[Ratio], dict[str, Any]]:
    """Give the bare view its body, check what is served, then the six scenarios in rounds."""
    auth = {"Authorization": f"Bearer {api_key}"}
    status, headers, body = request(
        server.port, f"{config_path(SMALL_AGENT)}?user_id={STABLE_USER}", auth
    )
    if status != 200 or "etag" not in headers:
        raise BenchError(f"small-agent answered {status} {headers}: {body[:300]!r}")
    answer = json.loads(body)
    body_file.write_text(json.dumps(answer), encoding="utf-8")
    status, _, bare_body = request(server.port, BARE_PATH, {})
    if status != 200 or json.loads(bare_body) != answer:
        raise BenchError(f"{BARE_PATH} does not serve small-agent's body ({status}).")
    checks = sanity_checks(server.port, api_key, say)
    checks["workers"] = server.discover_workers(args.workers)
    checks["endpoint_body_bytes"] = len(body)
    checks["bare_body_bytes"] = len(bare_body)

    scenarios = scenarios_for(api_key, headers["etag"], args.big_versions)
    for scenario in scenarios:
        check_scenario(server.port, scenario)
        if args.warmup:
            load.sample(server.port, scenario, args.warmup)
    say(f"measuring {len(scenarios)} scenarios: {rounds} rounds of {args.round} s")
    samples = measure_interleaved(load, server.port, scenarios, rounds, args.round, say)
    bare, small = samples["bare"], samples["small"]
    ratios = []
    for name in ("canary", "flags", "small"):
        ratios.append(paired_ratio(f"{name} / bare", "rps", samples[name], bare, "rps"))
        ratios.append(paired_ratio(f"{name} / bare", "p99", samples[name], bare, "p99_ms"))
    ratios.append(paired_ratio("not_modified / bare", "rps", samples["not_modified"], bare, "rps"))
    ratios.append(paired_ratio("big / small", "rps", samples["big"], small, "rps"))
    ratios.append(paired_ratio("big / small", "p99", samples["big"], small, "p99_ms"))
    return [summarise(s, samples[s.name]) for s in scenarios], ratios, checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_loopback(args.admin_url, "--admin-url")
    database_url = bench_database_url(args.admin_url, args.db_name)
    rounds = max(1, round(args.duration / args.round))
    started = time.monotonic()
    load_before = os.getloadavg()
    revision = code_revision()
    servers: list[Server] = []
    measurements: list[Measurement] = []
    ratios: list[Ratio] = []
    propagations: list[Propagation] = []
    setup: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="agentconfig-bench-"))
    log = workdir / "server.log"
    load = Load(args, workdir)
    database_created = False

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    def start_server(env: dict[str, str], label: str) -> Server:
        server = Server(args, env, label, log)
        servers.append(server)
        server.wait_ready()
        return server

    def stop_server(server: Server) -> None:
        server.stop()
        servers.remove(server)

    try:
        with terminate_as_interrupt():
            check_tools(args)
            if load.wrk is None:
                say("wrk is not used: the Python load generator needs more of the 2 cores")
            if revision["changed"]:
                say(
                    f"note: measuring HEAD {revision['head']} plus {len(revision['changed'])} "
                    "uncommitted files outside bench/"
                )
            say(f"recreating database {args.db_name}")
            recreate_database(args.admin_url, args.db_name)
            database_created = True
            prod = production_env(database_url)
            dev = dev_env(workdir / "dev.sqlite3")

            # The SQLite database is prepared meanwhile: setup is not measured.
            dev_result: dict[str, Any] = {}

            def prepare_dev() -> None:
                try:
                    dev_result["prepared"] = prepare_database(dev, args, workdir, False, say)
                except BaseException as exc:  # reported by the main thread
                    dev_result["error"] = exc

            dev_thread = threading.Thread(target=prepare_dev, daemon=True)
            if args.dev_deploys:
                dev_thread.start()
            api_key, setup["postgresql"] = prepare_database(prod, args, workdir, True, say)
            if args.dev_deploys:
                dev_thread.join(timeout=900)
                if "error" in dev_result:
                    raise dev_result["error"]
                if "prepared" not in dev_result:
                    raise BenchError("preparing the SQLite database did not finish in 900 s")
                setup["sqlite"] = dev_result["prepared"][1]

            body_file = workdir / "bare_body.json"
            server = start_server({**prod, "BENCH_BARE_BODY_FILE": str(body_file)}, "production")
            say(f"{server.describe} on {HOST}:{server.port}")
            measurements, ratios, checks = measure_load(
                server, api_key, body_file, load, args, rounds, say
            )

            say(f"propagation: {args.deploys} deploys of {SMALL_AGENT} (production, PostgreSQL)")
            propagations.append(
                measure_propagation(
                    server, api_key, prod, args, "production-postgresql", args.deploys, say
                )
            )
            stop_server(server)

            if args.dev_deploys:
                dev_key = dev_result["prepared"][0]
                dev_server = start_server(dev, "dev")
                say(f"{dev_server.describe} on {HOST}:{dev_server.port} (dev settings, SQLite)")
                say(f"propagation: {args.dev_deploys} deploys of {SMALL_AGENT} (dev, SQLite)")
                propagations.append(
                    measure_propagation(
                        dev_server, dev_key, dev, args, "dev-sqlite", args.dev_deploys, say
                    )
                )
                stop_server(dev_server)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        if log.exists() and log.stat().st_size:
            print(f"server log:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        end_children()
        for server in list(servers):
            server.stop()
        if database_created:
            with contextlib.suppress(Exception):
                drop_database(args.admin_url, args.db_name)
        shutil.rmtree(workdir, ignore_errors=True)
        say(f"stopped the servers, dropped {args.db_name}, removed {workdir}")

    load_after = os.getloadavg()
    table = format_table(measurements, ratios, propagations)
    print()
    print(table)
    print(
        f"\nserver: {args.server}, {args.workers} workers x {args.threads} threads; load: "
        f"{load.tool}; code: {revision['head']}"
        + (f" + {len(revision['changed'])} uncommitted files" if revision["changed"] else "")
        + f"; load average before/after {load_before[0]:.1f}/{load_after[0]:.1f}"
    )
    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": revision,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "server": f"{server_description(args)} {WSGI_APP}",
        "load_generator": load.tool,
        "setup": setup,
        "checks": checks,
        "scenarios": [asdict(m) for m in measurements],
        "ratios": [asdict(r) for r in ratios],
        "propagation": [asdict(p) for p in propagations],
        "table": table.splitlines(),
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({result['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
