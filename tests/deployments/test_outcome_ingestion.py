"""Outcome ingestion: set-based upserts, counted once, never in a rollback's way."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from deployments.models import OutcomeCount, OutcomeEventId, OutcomeLatency, Track
from deployments.models.canary import OUTCOME_DEDUP_DAYS, POLICY_LIMITS
from deployments.sequential import latency_bin
from deployments.services import canaries
from deployments.services.outcomes import VersionsNotServed, parse_events, record_outcomes
from deployments.services.releases import lock_pointer, rollback
from tests import factories
from tests.deployments.canary_helpers import OPS, start


@pytest.fixture
def versions(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    return v1, v2


def _minute() -> dt.datetime:
    return timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=2)


def _event(version, event_id, at, *, ok=True, latency_ms=None, score=None) -> dict:
    event = {
        "event_id": event_id,
        "version_id": str(version.id),
        "user_id": f"user-{event_id}"[:200],
        "ok": ok,
        "timestamp": (at + dt.timedelta(seconds=10)).isoformat(),
    }
    if latency_ms is not None:
        event["latency_ms"] = latency_ms
    if score is not None:
        event["score"] = score
    return event


def _record(agent, environment, events) -> tuple[int, int]:
    return record_outcomes(
        agent=agent,
        environment_id=environment.pk,
        events=parse_events({"events": events}, now=timezone.now()),
    )


def _counts(agent) -> dict[tuple[int, str], tuple]:
    return {
        (row.version.version_number, row.track): (
            row.n,
            row.errors,
            row.latency_count,
            row.latency_sum,
            row.latency_sumsq,
            row.score_count,
            row.score_sum,
            row.score_sumsq,
        )
        for row in OutcomeCount.objects.filter(agent=agent).select_related("version")
    }


def _bins(agent) -> dict[tuple[int, str, int], int]:
    return {
        (row.version.version_number, row.track, row.bin): row.count
        for row in OutcomeLatency.objects.filter(agent=agent).select_related("version")
    }


def test_record_outcomes__batch_with_repeats__each_id_counted_once_per_track_and_bin(
    versions, production, agent
):
    # Given a canary of v2, and a batch where e1 comes twice (the second time as an error)
    v1, v2 = versions
    start(v2, production)
    at = _minute()
    batch = [
        _event(v1, "e1", at, latency_ms=100, score=1),
        _event(v1, "e2", at, ok=False, latency_ms=101, score=3),
        _event(v1, "e1", at, ok=False, latency_ms=5000),
        _event(v1, "e3", at),
        _event(v2, "e4", at, latency_ms=200),
    ]

    # When it is recorded
    accepted, duplicates = _record(agent, production, batch)

    # Then the first e1 counts and the repeat does not; v2 counts on the canary track
    assert (accepted, duplicates) == (4, 1)
    assert _counts(agent) == {
        (1, Track.STABLE): (3, 1, 2, 201.0, 100.0**2 + 101.0**2, 2, 4.0, 10.0),
        (2, Track.CANARY): (1, 0, 1, 200.0, 200.0**2, 0, 0.0, 0.0),
    }
    # And 100 ms and 101 ms share a 5 % latency bin
    assert latency_bin(100) == latency_bin(101) != latency_bin(200)
    assert _bins(agent) == {
        (1, Track.STABLE, latency_bin(100)): 2,
        (2, Track.CANARY, latency_bin(200)): 1,
    }
    assert OutcomeEventId.objects.filter(agent=agent).count() == 4
    assert OutcomeCount.objects.get(version=v1).bucket_start == at


def test_record_outcomes__retried_batch__counted_once(versions, production, agent):
    # Given a recorded batch
    v1, _ = versions
    at = _minute()
    batch = [_event(v1, f"e{i}", at, ok=i % 2 == 0, latency_ms=10 * i) for i in range(1, 7)]
    assert _record(agent, production, batch) == (6, 0)
    counts, bins = _counts(agent), _bins(agent)

    # When the runtime sends it again (its first answer was lost)
    retried = _record(agent, production, batch)

    # Then nothing is counted twice
    assert retried == (0, 6)
    assert _counts(agent) == counts
    assert _bins(agent) == bins
    assert counts[(1, Track.STABLE)][:3] == (6, 3, 6)


def test_record_outcomes__new_events_in_a_stored_minute__added_to_its_rows(
    versions, production, agent
):
    # Given a minute with two outcomes stored
    v1, _ = versions
    at = _minute()
    _record(
        agent, production, [_event(v1, "a1", at, latency_ms=100, score=2), _event(v1, "a2", at)]
    )

    # When a later batch brings three more of that minute, one of them a repeat of a1
    accepted, duplicates = _record(
        agent,
        production,
        [
            _event(v1, "b1", at, ok=False, latency_ms=101, score=4),
            _event(v1, "a1", at, latency_ms=9999),
            _event(v1, "b2", at, latency_ms=200),
        ],
    )

    # Then the minute's row and its latency bins hold the sums of both batches
    assert (accepted, duplicates) == (2, 1)
    assert OutcomeCount.objects.filter(agent=agent).count() == 1
    assert _counts(agent) == {
        (1, Track.STABLE): (
            4,
            1,
            3,
            401.0,
            100.0**2 + 101.0**2 + 200.0**2,
            2,
            6.0,
            20.0,
        )
    }
    assert _bins(agent) == {
        (1, Track.STABLE, latency_bin(100)): 2,
        (1, Track.STABLE, latency_bin(200)): 1,
    }


def test_record_outcomes__a_full_batch__written_in_statements_within_the_parameter_limit(
    versions, production, agent
):
    # Given 1,000 events over three minutes and many latency bins: more values than
    # SQLite takes in one statement
    v1, _ = versions
    at = _minute() - dt.timedelta(minutes=2)
    batch = [
        _event(v1, f"e{i}", at + dt.timedelta(minutes=i % 3), latency_ms=1 + i * 37)
        for i in range(1000)
    ]

    # When it is recorded
    accepted, _ = _record(agent, production, batch)

    # Then every event counts once, in its minute and its bin
    assert accepted == 1000
    assert OutcomeEventId.objects.filter(agent=agent).count() == 1000
    rows = OutcomeCount.objects.filter(agent=agent)
    assert sorted(row.n for row in rows) == [333, 333, 334]
    assert sum(row.latency_sum for row in rows) == sum(1 + i * 37 for i in range(1000))
    bins = OutcomeLatency.objects.filter(agent=agent)
    assert sum(row.count for row in bins) == 1000
    assert bins.count() > 999 // 7  # more bin rows than one SQLite statement takes


@pytest.mark.parametrize(
    "event_id",
    ["NULL", 'a "quoted", {braced} id', "back\\slash", "tab\there", "ünïcødé ✓", "x" * 200],
)
def test_record_outcomes__id_with_awkward_text__stored_verbatim_and_counted_once(
    versions, production, agent, event_id
):
    # Given a batch whose ids need quoting wherever they are written (array literals too)
    v1, _ = versions
    batch = [_event(v1, event_id, _minute()), _event(v1, "plain", _minute())]

    # When it is sent twice
    first, second = _record(agent, production, batch), _record(agent, production, batch)

    # Then the ids are stored as sent, and the retry is recognised
    assert (first, second) == ((2, 0), (0, 2))
    stored = set(OutcomeEventId.objects.values_list("event_id", flat=True))
    assert stored == {event_id, "plain"}


def test_record_outcomes__half_the_batch_about_an_unserved_version__nothing_stored(
    versions, production, agent
):
    # Given a batch whose second half names v2, which production does not serve
    v1, v2 = versions
    at = _minute()
    good = [_event(v1, f"e{i}", at, latency_ms=50) for i in range(5)]
    bad = [_event(v2, f"e{i}", at, latency_ms=50) for i in range(5, 10)]

    # When it is recorded
    with pytest.raises(VersionsNotServed) as refused:
        _record(agent, production, good + bad)

    # Then it is refused whole, naming each bad event, and nothing is stored: resending
    # the good half counts it in full
    assert [error.index for error in refused.value.errors] == [5, 6, 7, 8, 9]
    assert not OutcomeEventId.objects.exists()
    assert not OutcomeCount.objects.exists()
    assert not OutcomeLatency.objects.exists()
    assert _record(agent, production, good) == (5, 0)


@pytest.mark.postgres
def test_record_outcomes__counter_upsert_fails__event_ids_rolled_back_too(
    versions, production, agent
):
    # Given a minute whose stored count is at the column's maximum (PostgreSQL integer)
    v1, _ = versions
    at = _minute()
    _record(agent, production, [_event(v1, "first", at)])
    OutcomeCount.objects.filter(agent=agent).update(n=2**31 - 1)

    # When a batch adds to it, so the count upsert fails after the ids were inserted
    with pytest.raises(DataError):
        _record(agent, production, [_event(v1, "second", at, latency_ms=10)])

    # Then the batch left nothing: its id is not remembered, so a retry is not a duplicate
    assert list(OutcomeEventId.objects.values_list("event_id", flat=True)) == ["first"]
    assert not OutcomeLatency.objects.exists()


# --- concurrency (PostgreSQL, threads with their own connections) -----------------------


class _Abandon(Exception):
    """Ends a thread's transaction with a rollback."""


def _in_thread(target) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_record_outcomes__batch_open_in_another_transaction__rollback_does_not_wait():
    # Given a batch recorded inside a transaction that stays open
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    factories.deploy(v2, production)
    recorded, release = threading.Event(), threading.Event()
    results: list[object] = []

    def batch() -> None:
        with transaction.atomic():
            results.append(_record(agent, production, [_event(v2, "e1", _minute())]))
            recorded.set()
            release.wait(timeout=10)

    thread = _in_thread(batch)
    try:
        assert recorded.wait(timeout=10)

        # When a rollback runs meanwhile, allowed to wait 2 s for the agent-row lock
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            entry = rollback(agent=agent, environment=production, actor=OPS, reason="incident")
    finally:
        release.set()
        thread.join(timeout=10)

    # Then it went through while the batch was still open, and the batch committed after
    assert entry.to_version == v1
    assert results == [(1, 0)]
    assert OutcomeCount.objects.get(agent=agent).n == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_record_outcomes__agent_row_locked_by_a_release__batch_recorded_meanwhile():
    # Given a release holding the agent-row lock (as deploys and rollbacks take it)
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    factories.deploy(v1, production)
    locked, release = threading.Event(), threading.Event()
    held_until_released: list[bool] = []

    def hold_lock() -> None:
        with transaction.atomic():
            lock_pointer(agent, production)
            locked.set()
            held_until_released.append(release.wait(timeout=10))

    thread = _in_thread(hold_lock)
    try:
        assert locked.wait(timeout=10)

        # When a batch is recorded and committed meanwhile, allowed to wait 2 s for any
        # lock (the commit's deferred foreign-key check takes a key-share lock on the
        # agent row, which the release's FOR NO KEY UPDATE does not exclude)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            result = _record(agent, production, [_event(v1, "e1", _minute())])
        counted = OutcomeCount.objects.get(agent=agent).n
        still_held = not release.is_set() and thread.is_alive()
    finally:
        release.set()
        thread.join(timeout=10)

    # Then the batch was stored and committed while the release held the lock
    assert still_held
    assert held_until_released == [True]
    assert (result, counted) == ((1, 0), 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_record_outcomes__concurrent_batches_with_overlapping_ids__each_id_counted_once():
    # Given two runtimes that send the same overlapping batches at once, in opposite orders
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    factories.deploy(v1, production)
    at = _minute()
    ids = [f"e{i}" for i in range(1500)]
    windows = [ids[i : i + 1000] for i in range(0, 1500, 250)]
    batches = {"a": windows, "b": [list(reversed(w)) for w in reversed(windows)]}
    barrier = threading.Barrier(2)
    accepted: dict[str, int] = {}
    errors: list[BaseException] = []

    def send(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            total = 0
            for chunk in batches[name]:
                events = [_event(v1, i, at, latency_ms=100) for i in chunk]
                total += _record(agent, production, events)[0]
            accepted[name] = total
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    # When they are recorded concurrently
    threads = [_in_thread(lambda name=name: send(name)) for name in batches]
    for thread in threads:
        thread.join(timeout=60)

    # Then each distinct id counted exactly once, with no deadlock and no lost increment
    assert errors == []
    assert accepted["a"] + accepted["b"] == len(ids)
    assert OutcomeEventId.objects.filter(agent=agent).count() == len(ids)
    assert OutcomeCount.objects.get(agent=agent).n == len(ids)
    assert sum(_bins(agent).values()) == len(ids)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("first_commits", "second_accepts"), [(True, 0), (False, 3)])
def test_record_outcomes__same_ids_while_first_batch_uncommitted__second_waits_for_its_end(
    first_commits, second_accepts
):
    # Given a batch of three ids stored by a transaction that is still open
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    factories.deploy(v1, production)
    batch = [_event(v1, f"e{i}", _minute()) for i in range(3)]
    stored, finish = threading.Event(), threading.Event()

    def first() -> None:
        with contextlib.suppress(_Abandon), transaction.atomic():
            _record(agent, production, batch)
            stored.set()
            finish.wait(timeout=10)
            if not first_commits:
                raise _Abandon

    second_result: list[tuple[int, int]] = []
    second_done = threading.Event()

    def second() -> None:
        second_result.append(_record(agent, production, batch))
        second_done.set()

    first_thread = _in_thread(first)
    assert stored.wait(timeout=10)
    second_thread = _in_thread(second)

    # When the same ids arrive from another connection, and then the first batch ends
    waited = not second_done.wait(timeout=0.5)
    finish.set()
    first_thread.join(timeout=10)
    second_thread.join(timeout=10)

    # Then the second batch waited for the first's end: it skips ids the first committed
    # and counts those the first rolled back, so each counts exactly once
    assert waited
    assert second_result == [(second_accepts, 3 - second_accepts)]
    assert OutcomeEventId.objects.filter(agent=agent).count() == 3
    assert OutcomeCount.objects.get(agent=agent).n == 3


def test_prune__old_event_ids_and_latency_bins_dropped__counts_and_recent_rows_kept(
    versions, production, agent
):
    # Given outcomes with latencies now, stored as if they were received now
    v1, _ = versions
    _record(agent, production, [_event(v1, "e1", _minute(), latency_ms=120)])
    now = timezone.now()

    # When the watcher prunes one day within each retention, then one day past it
    kept = (
        canaries.prune_outcome_event_ids(now=now + dt.timedelta(days=OUTCOME_DEDUP_DAYS - 1)),
        canaries.prune_outcome_latencies(
            now=now + canaries.LATENCY_RETENTION - dt.timedelta(days=1)
        ),
    )
    dropped = (
        canaries.prune_outcome_event_ids(now=now + dt.timedelta(days=OUTCOME_DEDUP_DAYS + 1)),
        canaries.prune_outcome_latencies(
            now=now + canaries.LATENCY_RETENTION + dt.timedelta(days=1)
        ),
    )

    # Then nothing went early, both went after, and the per-minute counts stay
    assert kept == (0, 0) and dropped == (1, 1)
    assert not OutcomeEventId.objects.exists() and not OutcomeLatency.objects.exists()
    assert OutcomeCount.objects.get(agent=agent).n == 1
    # and the longest policy's canary can still read its first step's bins
    assert (
        dt.timedelta(minutes=POLICY_LIMITS["max_duration_minutes"][1]) < canaries.LATENCY_RETENTION
    )
