"""Outcome ingestion benchmark: events/s, flat with a large id table, rollbacks unhindered.

Run from the project folder with the project's virtualenv (PostgreSQL on 127.0.0.1):

    .venv/bin/python bench/outcome_ingestion.py
    .venv/bin/python bench/outcome_ingestion.py --batches 20 --rollbacks 5 --preload 100000

In one run, in-process (Django set up with `agentconfig.settings.production`, a random
SECRET_KEY, no CACHE_URL):

1. Setup: drops and recreates the PostgreSQL database `agentconfig_bench_outcomes`,
   migrates it, and creates through the services two agents (`bench-new`, `bench-old`),
   each with v1 and v2 in production, v2 deployed and rolled back to v1 (so both are served:
   v2 within the grace window), with break glass (production needs approval).
2. Throughput: two worker processes (forked, one connection each, as two app workers) send
   `--batches` batches of 1,000 events each through `parse_events` + `record_outcomes`
   (what the outcomes view does after reading the JSON body): 90 % v1, 10 % v2, 2 % errors,
   a latency on every event, a score on 60 %, timestamps spread over the last two minutes.
   Measured on empty tables ("first 100k"), then again after `--preload` event ids (and a
   week of count and latency rows) were inserted directly with generate_series — not
   through the API: loading a million ids through it would be most of the run. Then
   VACUUM (ANALYZE) and CHECKPOINT, so autovacuum and the checkpointer do not run during
   the next measure.
3. Rollbacks: `--rollbacks` times, `deploy_version` v2 then `rollback` (back to v1) from
   the main process, idle and then while both workers ingest without pause; the latency of
   each `rollback` call (its whole transaction) is recorded.
4. The same throughput and rollback-under-ingest measures for the previous implementation
   (`deployments/outcomes.py` at `--old-rev`, loaded from git into a temporary module,
   on its own agent) unless `--no-old`.
5. Prints the figures and a Markdown table for bench/README.md; always drops the database.

Invariants:
- Only a loopback PostgreSQL is contacted; the only database created and dropped is the
  bench database, whose name must contain "bench".
- Every loop is bounded by a count or a deadline; worker processes are joined with a
  timeout and, if still alive, terminated by their own pid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Exits with how to run the script when it is not started with the project's virtualenv.
from pg_databases import (
    BREAK_GLASS,
    LOOPBACK,
    bench_database_url,
    drop_database,
    production_env,
    recreate_database,
)

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = "production"
WORKERS = 2
BATCH = 1000
# The revision whose outcomes.py takes the agent-row lock for every batch.
OLD_REV = "a07ba87"


class BenchError(Exception):
    """A step of the bench failed; the message says which and what to check."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="where to create the bench database (loopback only)",
    )
    parser.add_argument("--db-name", default="agentconfig_bench_outcomes")
    parser.add_argument(
        "--batches", type=int, default=50, help="batches of 1,000 per worker and measure"
    )
    parser.add_argument("--preload", type=int, default=1_000_000, help="event ids preloaded")
    parser.add_argument("--rollbacks", type=int, default=20)
    parser.add_argument(
        "--rollback-pause", type=float, default=0.2, help="seconds between rollback cycles"
    )
    parser.add_argument("--old-rev", default=OLD_REV, help="git revision of the old outcomes.py")
    parser.add_argument("--no-old", action="store_true", help="skip the old implementation")
    args = parser.parse_args(argv)
    if "bench" not in args.db_name:
        parser.error("--db-name must contain 'bench': it is dropped at the end.")
    host = urlsplit(args.admin_url).hostname or ""
    if host not in LOOPBACK:
        parser.error(f"--admin-url must point at a loopback address, not {host!r}.")
    return args


# --- database and Django ------------------------------------------------------------------


def setup_django(database_url: str) -> None:
    env = production_env(database_url)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load_old_module(rev: str) -> types.ModuleType | None:
    """deployments/outcomes.py as of `rev`, as a module of its own; None if git cannot."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:deployments/outcomes.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"note: old implementation skipped (git show {rev} failed: {exc})")
        return None
    if "select_for_update" not in source:
        print(f"note: outcomes.py at {rev} takes no agent lock; old implementation skipped")
        return None
    module = types.ModuleType("bench_old_outcomes")
    module.__file__ = f"<git {rev}:deployments/outcomes.py>"
    sys.modules[module.__name__] = module  # its dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own code
    return module


@dataclass
class Target:
    agent_id: int
    environment_id: int
    v1: str
    v2: str


def create_agent(slug: str) -> Target:
    from agentconfig.core.actors import Actor
    from deployments.models import Environment
    from deployments.services.releases import deploy_version, rollback
    from versions import services as version_services

    actor = Actor.system("bench")
    environment = Environment.objects.get(slug=ENVIRONMENT)
    agent = version_services.create_agent(slug=slug, name=slug, actor=actor)
    versions = [
        version_services.create_version(
            agent=agent,
            actor=actor,
            config={
                "system_prompt": f"You are {slug}, prompt revision {number}.",
                "model": "gpt-4o-mini",
                "temperature": 0.2,
                "max_tokens": 800,
            },
            change_description=f"bench: version {number}",
            source="demo",
        )
        for number in (1, 2)
    ]
    for version in (versions[0], versions[1]):
        deploy_version(
            agent=agent,
            environment=environment,
            version=version,
            actor=actor,
            reason="bench setup",
            break_glass=BREAK_GLASS,
        )
    rollback(agent=agent, environment=environment, actor=actor, reason="bench setup")
    return Target(agent.pk, environment.pk, str(versions[0].pk), str(versions[1].pk))


def preload(target: Target, ids: int) -> dict[str, float]:
    """`ids` event ids received over the last week, and a week of count and latency rows of
    v1 ending an hour ago (so no live minute collides): straight SQL, not the API."""
    from django.db import connection

    from deployments.models import OutcomeCount, OutcomeEventId, OutcomeLatency

    timings = {}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        started = time.monotonic()
        cursor.execute(
            f"INSERT INTO {quote(OutcomeEventId._meta.db_table)} "  # noqa: S608 - model names
            "(agent_id, environment_id, event_id, received_at) "
            "SELECT %s, %s, 'preload-' || g, now() - (g %% 604800) * interval '1 second' "
            "FROM generate_series(1, %s) AS g",
            [target.agent_id, target.environment_id, ids],
        )
        timings["event ids"] = time.monotonic() - started
        minutes = (
            "SELECT m FROM generate_series(date_trunc('minute', now()) - interval '7 days', "
            "date_trunc('minute', now()) - interval '1 hour', interval '1 minute') AS m"
        )
        started = time.monotonic()
        cursor.execute(
            f"INSERT INTO {quote(OutcomeCount._meta.db_table)} "  # noqa: S608 - model names
            "(agent_id, environment_id, version_id, track, bucket_start, n, errors, "
            "latency_count, latency_sum, latency_sumsq, score_count, score_sum, score_sumsq) "
            "SELECT %s, %s, %s, 'stable', m, 100, 2, 100, 80000, 8e7, 60, 45, 35 "
            f"FROM ({minutes}) t",
            [target.agent_id, target.environment_id, target.v1],
        )
        cursor.execute(
            f"INSERT INTO {quote(OutcomeLatency._meta.db_table)} "  # noqa: S608 - model names
            "(agent_id, environment_id, version_id, track, bucket_start, bin, count) "
            f"SELECT %s, %s, %s, 'stable', m, b, 5 FROM ({minutes}) t, "
            "generate_series(130, 149) AS b",
            [target.agent_id, target.environment_id, target.v1],
        )
        timings["counts and bins"] = time.monotonic() - started
        # What autovacuum and the checkpointer would do after such a load, done now so that
        # they do not land in the next measure (2 cores).
        started = time.monotonic()
        for model in (OutcomeEventId, OutcomeCount, OutcomeLatency):
            cursor.execute(f"VACUUM (ANALYZE) {quote(model._meta.db_table)}")
        cursor.execute("CHECKPOINT")
        timings["vacuum and checkpoint"] = time.monotonic() - started
    return timings


def table_rows() -> dict[str, int]:
    from deployments.models import OutcomeCount, OutcomeEventId, OutcomeLatency

    return {
        model.__name__: model.objects.count()
        for model in (OutcomeEventId, OutcomeCount, OutcomeLatency)
    }


# --- load ---------------------------------------------------------------------------------


def make_batch(target: Target, rng: random.Random, prefix: str, start: int) -> dict[str, Any]:
    now = time.time()
    events = []
    for seq in range(start, start + BATCH):
        event: dict[str, Any] = {
            "event_id": f"{prefix}-{seq}",
            "version_id": target.v2 if rng.random() < 0.1 else target.v1,
            "user_id": f"u{rng.randrange(1_000_000)}",
            "ok": rng.random() >= 0.02,
            "latency_ms": round(rng.lognormvariate(6.7, 0.5), 1),
            "timestamp": dt.datetime.fromtimestamp(now - rng.uniform(0, 120), dt.UTC).isoformat(),
        }
        if rng.random() < 0.6:
            event["score"] = rng.choice((0, 0.5, 1))
        events.append(event)
    return {"events": events}


def ingest_worker(
    implementation: str,
    target: Target,
    prefix: str,
    batches: int | None,
    start_barrier: Any,
    stop: Any,
    results: Any,
) -> None:
    """One app worker: parse and record batches, `batches` of them or until `stop`."""
    from django.db import connection
    from django.utils import timezone

    from agentconfig.models import Agent
    from deployments.services import outcomes

    module = outcomes if implementation == "new" else sys.modules["bench_old_outcomes"]
    rng = random.Random(prefix)
    agent = Agent.objects.get(pk=target.agent_id)
    prepared = [
        make_batch(target, rng, prefix, i * BATCH) for i in range(batches if batches else 1)
    ]
    durations: list[float] = []
    record_seconds = 0.0
    accepted = 0
    error = ""
    try:
        start_barrier.wait(timeout=60)
        began = time.monotonic()
        index = 0
        deadline = began + 120
        while (index < batches) if batches else not stop.is_set():
            if time.monotonic() > deadline:
                error = "stopped at the 120 s deadline"
                break
            payload = prepared[index] if batches else make_batch(target, rng, prefix, index * BATCH)
            t0 = time.monotonic()
            events = module.parse_events(payload, now=timezone.now())
            t1 = time.monotonic()
            accepted += module.record_outcomes(
                agent=agent, environment_id=target.environment_id, events=events
            )[0]
            t2 = time.monotonic()
            durations.append(t2 - t0)
            record_seconds += t2 - t1
            index += 1
        ended = time.monotonic()
    except Exception as exc:  # reported by the parent
        error = f"{type(exc).__name__}: {exc}"
        began = ended = time.monotonic()
    finally:
        connection.close()
    results.put(
        {
            "began": began,
            "ended": ended,
            "accepted": accepted,
            "durations": durations,
            "record_seconds": record_seconds,
            "error": error,
        }
    )


@dataclass
class Ingest:
    events: int
    seconds: float
    batch_p50_ms: float
    batch_max_ms: float
    record_share: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Workers:
    """WORKERS forked ingest processes; `stop()` ends open-ended runs and collects them."""

    def __init__(self, implementation: str, target: Target, phase: str, batches: int | None):
        from django.db import connections

        context = multiprocessing.get_context("fork")
        self.results = context.Queue()
        self.stop_event = context.Event()
        barrier = context.Barrier(WORKERS + 1)
        connections.close_all()  # a forked child must never share the parent's socket
        self.processes = [
            context.Process(
                target=ingest_worker,
                args=(
                    implementation,
                    target,
                    f"{phase}-w{n}",
                    batches,
                    barrier,
                    self.stop_event,
                    self.results,
                ),
                daemon=True,
            )
            for n in range(WORKERS)
        ]
        for process in self.processes:
            process.start()
        barrier.wait(timeout=120)

    def finish(self) -> Ingest:
        self.stop_event.set()
        reports = [self.results.get(timeout=180) for _ in self.processes]
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                os.kill(process.pid, 15)
        errors = [r["error"] for r in reports if r["error"]]
        if errors:
            raise BenchError(f"an ingest worker failed: {errors[0]}")
        durations = [d for r in reports for d in r["durations"]]
        busy = sum(durations)
        return Ingest(
            events=sum(r["accepted"] for r in reports),
            seconds=max(r["ended"] for r in reports) - min(r["began"] for r in reports),
            batch_p50_ms=statistics.median(durations) * 1000,
            batch_max_ms=max(durations) * 1000,
            record_share=sum(r["record_seconds"] for r in reports) / busy if busy else 0.0,
        )


def measure_ingest(implementation: str, target: Target, phase: str, batches: int) -> Ingest:
    result = Workers(implementation, target, phase, batches).finish()
    if result.events != WORKERS * batches * BATCH:
        raise BenchError(f"{phase}: {result.events} events accepted, expected all to be new")
    return result


@dataclass
class Rollbacks:
    seconds: list[float]  # each `rollback` call
    lock_waits: list[float]  # `lock_pointer` alone, in a transaction rolled back


def measure_rollbacks(target: Target, count: int, pause: float) -> Rollbacks:
    """`count` times: how long taking the agent-row lock takes (as a release does, then
    rolled back), a deploy of v2 (break glass), and the timed `rollback` to v1."""
    from django.db import transaction

    from agentconfig.core.actors import Actor
    from agentconfig.models import Agent
    from deployments.models import Environment
    from deployments.services.releases import deploy_version, lock_pointer, rollback
    from versions.models import AgentVersion

    actor = Actor.system("bench")
    agent = Agent.objects.get(pk=target.agent_id)
    environment = Environment.objects.get(pk=target.environment_id)
    v2 = AgentVersion.objects.get(pk=target.v2)
    result = Rollbacks([], [])
    for _ in range(count):
        with transaction.atomic():
            started = time.monotonic()
            lock_pointer(agent, environment)
            result.lock_waits.append(time.monotonic() - started)
            transaction.set_rollback(True)
        deploy_version(
            agent=agent,
            environment=environment,
            version=v2,
            actor=actor,
            reason="bench: release",
            break_glass=BREAK_GLASS,
        )
        time.sleep(pause / 2)
        started = time.monotonic()
        entry = rollback(agent=agent, environment=environment, actor=actor, reason="bench")
        result.seconds.append(time.monotonic() - started)
        if str(entry.to_version_id) != target.v1:
            raise BenchError("a rollback did not go back to v1")
        time.sleep(pause / 2)
    return result


def rollbacks_under_ingest(
    implementation: str, target: Target, phase: str, count: int, pause: float
) -> tuple[Rollbacks, Ingest]:
    workers = Workers(implementation, target, phase, None)
    try:
        time.sleep(1)  # both workers in their stride
        rollbacks = measure_rollbacks(target, count, pause)
    finally:
        ingest = workers.finish()
    return rollbacks, ingest


# --- report -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summary(latencies: list[float]) -> str:
    """p50 / p90 / max in milliseconds."""
    return (
        f"{ms(statistics.median(latencies))} / {ms(percentile(latencies, 0.9))} / "
        f"{ms(max(latencies))} ms"
    )


def report_rollbacks_under_ingest(
    figures: dict[str, Any],
    implementation: str,
    target: Target,
    phase: str,
    args: argparse.Namespace,
) -> None:
    """Measure rollbacks while `implementation` ingests; keep the figures and print them."""
    rollbacks, sustained = rollbacks_under_ingest(
        implementation, target, phase, args.rollbacks, args.rollback_pause
    )
    figures[f"{implementation}_rollbacks"] = rollbacks
    figures[f"{implementation}_sustained"] = sustained
    print(
        f"rollback during {implementation} ingest: p50 / p90 / max {rollback_line(rollbacks)}; "
        f"ingest meanwhile {ingest_line(sustained)}"
    )


def rollback_line(result: Rollbacks) -> str:
    return f"{summary(result.seconds)} (agent-row lock alone: {summary(result.lock_waits)})"


def ingest_line(result: Ingest) -> str:
    return (
        f"{result.rate:,.0f} events/s ({result.events:,} events in {result.seconds:.1f} s; "
        f"batch p50 {result.batch_p50_ms:.0f} ms, max {result.batch_max_ms:.0f} ms; "
        f"record_outcomes {result.record_share:.0%} of a batch, parse_events the rest)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    database_url = bench_database_url(args.admin_url, args.db_name)
    wall = time.monotonic()
    load_before = os.getloadavg()[0]
    figures: dict[str, Any] = {}
    recreate_database(args.admin_url, args.db_name)
    try:
        setup_django(database_url)
        from django.db import connection

        old = None if args.no_old else load_old_module(args.old_rev)
        new_target = create_agent("bench-new")
        old_target = create_agent("bench-old") if old is not None else None
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            figures["postgres"] = cursor.fetchone()[0]
        total = WORKERS * args.batches * BATCH
        print(f"setup done in {time.monotonic() - wall:.0f} s; PostgreSQL {figures['postgres']}")

        figures["new_first"] = measure_ingest("new", new_target, "first", args.batches)
        print(f"new, first {total:,} events: {ingest_line(figures['new_first'])}")
        figures["preload"] = preload(new_target, args.preload)
        figures["rows"] = table_rows()
        print(
            f"preloaded {args.preload:,} event ids in {figures['preload']['event ids']:.1f} s, "
            f"a week of count and latency rows in {figures['preload']['counts and bins']:.1f} s, "
            f"VACUUM (ANALYZE) and CHECKPOINT in "
            f"{figures['preload']['vacuum and checkpoint']:.1f} s; rows now: {figures['rows']}"
        )
        figures["new_later"] = measure_ingest("new", new_target, "later", args.batches)
        print(f"new, after the preload: {ingest_line(figures['new_later'])}")

        figures["idle_rollbacks"] = measure_rollbacks(new_target, args.rollbacks, 0.05)
        print(f"rollback, idle: p50 / p90 / max {rollback_line(figures['idle_rollbacks'])}")
        report_rollbacks_under_ingest(figures, "new", new_target, "sustained", args)
        if old is not None and old_target is not None:
            figures["old_first"] = measure_ingest("old", old_target, "old", args.batches)
            print(f"old ({args.old_rev}), first {total:,}: {ingest_line(figures['old_first'])}")
            report_rollbacks_under_ingest(figures, "old", old_target, "old-sustained", args)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        drop_database(args.admin_url, args.db_name)
    figures["load"] = (load_before, os.getloadavg()[0])
    figures["seconds"] = time.monotonic() - wall
    print()
    print(markdown(args, figures))
    return 0


def markdown(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    has_old = "old_first" in figures
    head = "| | set-based upserts (this code) |" + (
        f" agent-row lock (`{args.old_rev}`) |" if has_old else ""
    )
    rule = "|---|---|" + ("---|" if has_old else "")

    def row(label: str, new: str, old: str = "") -> str:
        return f"| {label} | {new} |" + (f" {old} |" if has_old else "")

    def rate(key: str) -> str:
        return f"{figures[key].rate:,.0f}" if key in figures else ""

    def roll(key: str) -> str:
        return summary(figures[key].seconds) if key in figures else ""

    def lock(key: str) -> str:
        return summary(figures[key].lock_waits) if key in figures else ""

    total = WORKERS * args.batches * BATCH
    lines = [
        f"Run of {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, code `{revision}` plus the "
        f"working tree, PostgreSQL {figures['postgres']}, {os.cpu_count()} cores shared by "
        f"the workers and PostgreSQL (load average {figures['load'][0]:.1f} → "
        f"{figures['load'][1]:.1f}), {figures['seconds']:.0f} s in all. Two worker processes, "
        "one connection each, batches of 1,000 events through `parse_events` + "
        "`record_outcomes`.",
        "",
        head,
        rule,
        row(f"events/s, first {total:,} events", rate("new_first"), rate("old_first")),
        row(
            f"events/s, after {args.preload:,} more ids preloaded (generate_series)",
            rate("new_later"),
        ),
        row("events/s, while rollbacks run", rate("new_sustained"), rate("old_sustained")),
        row(
            "batch of 1,000, p50 ms (first run)",
            f"{figures['new_first'].batch_p50_ms:.0f}",
            f"{figures['old_first'].batch_p50_ms:.0f}" if has_old else "",
        ),
        row(f"rollback, idle, p50 / p90 / max ({args.rollbacks})", roll("idle_rollbacks")),
        row(
            f"rollback during sustained ingest, p50 / p90 / max ({args.rollbacks})",
            roll("new_rollbacks"),
            roll("old_rollbacks"),
        ),
        row(
            "taking the agent-row lock during sustained ingest, p50 / p90 / max",
            lock("new_rollbacks"),
            lock("old_rollbacks"),
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.exit(f"bench/outcome_ingestion.py: {exc}")
