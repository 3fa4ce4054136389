"""Outcome reporting: runtimes say how each answer went; we keep counts, not events.

Invariants:
- A batch is validated whole before anything is stored; one bad event rejects the
  batch, and the error names each bad event's index and field.
- Numbers are finite and within each field's range (LATENCY_RANGE, SCORE_RANGE), so the
  sums of squares the analysis keeps can never overflow; ids are text without NUL, so
  bad input is refused here rather than by the database.
- `event_id` makes a retried batch count once: an event counts only if its batch's
  `INSERT ... ON CONFLICT DO NOTHING RETURNING` stored its id, in the same transaction as
  its counts. A batch that meets an id another, uncommitted batch has just stored waits
  for that batch: it skips the id if the other commits, stores it if the other rolls back,
  so of two concurrent batches with the same ids each id counts exactly once. Ids are kept
  OUTCOME_DEDUP_DAYS, and events older than that are refused (a retry after the ids are
  gone would count twice).
- Counts are added per (agent, environment, version, track, minute), latencies per
  (..., minute, latency bin), by `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`:
  the database adds to each row atomically, so concurrent batches cannot lose increments.
  Ids, then counts, then bins are written in sorted key order, so batches never deadlock.
- No batch takes the agent-row lock, so a rollback never waits for a batch. (On
  PostgreSQL a batch's deferred foreign-key checks take a key-share lock on the agent and
  environment rows as it commits; releases and settings changes lock those rows FOR NO
  KEY UPDATE, which does not conflict, so neither waits for the other.) The pointer is read
  without a lock: a release that commits while a batch is stored counts as after it,
  which SERVED_GRACE already allows.
- A batch stores everything or nothing (one transaction).
- Events count only for versions the environment serves the agent: its stable or canary
  version now, or one that stopped being served less than SERVED_GRACE ago (answers
  still in flight). Anything else is refused whole (VersionsNotServed, HTTP 422).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agentconfig.core.safe_parse import InputError, check_number
from agentconfig.models import Agent
from deployments.models import (
    OutcomeCount,
    OutcomeEventId,
    OutcomeLatency,
    Pointer,
    ReleaseLogEntry,
    Track,
)
from deployments.models.canary import OUTCOME_DEDUP_DAYS
from deployments.sequential import latency_bin

MAX_EVENTS = 1000
MAX_ID_LENGTH = 200
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
# How long outcomes of a version that stopped being served are still taken: answers given
# just before a deploy or a canary's end, reported by the runtime's next batch.
SERVED_GRACE = dt.timedelta(minutes=15)
EVENT_FIELDS = {"event_id", "version_id", "user_id", "ok", "latency_ms", "score", "timestamp"}
# An hour: an answer slower than that is a timeout, not a latency.
LATENCY_RANGE = (0, 3_600_000)
# Wide enough for any scale of score (0-1, 1-5 stars, 0-100).
SCORE_RANGE = (-1_000_000, 1_000_000)


@dataclass(frozen=True)
class OutcomeEvent:
    event_id: str
    version_id: uuid.UUID
    user_id: str
    ok: bool
    latency_ms: float | None
    score: float | None
    timestamp: dt.datetime


@dataclass(frozen=True)
class EventError:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidBatch(Exception):
    def __init__(self, errors: list[EventError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the batch")
        self.errors = errors


class VersionsNotServed(InvalidBatch):
    """Well-formed events about versions the environment does not serve the agent."""


def parse_events(payload: Any, *, now: dt.datetime) -> list[OutcomeEvent]:
    """Validate a request body; InvalidBatch lists every problem by event index and field."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise InvalidBatch([EventError(None, "events", 'the body must be {"events": [...]}.')])
    unknown = set(payload) - {"events"}
    if unknown:
        raise InvalidBatch([EventError(None, sorted(unknown)[0], "unknown top-level field.")])
    raw_events = payload["events"]
    if not raw_events:
        raise InvalidBatch([EventError(None, "events", "is empty; send 1 to 1,000 events.")])
    if len(raw_events) > MAX_EVENTS:
        raise InvalidBatch(
            [EventError(None, "events", f"has {len(raw_events)} events; the maximum is 1,000.")]
        )
    errors: list[EventError] = []
    events: list[OutcomeEvent] = []
    for index, raw in enumerate(raw_events):
        event = _parse_event(index, raw, now, errors)
        if event is not None:
            events.append(event)
    if errors:
        raise InvalidBatch(errors)
    return events


def _parse_event(
    index: int, raw: Any, now: dt.datetime, errors: list[EventError]
) -> OutcomeEvent | None:
    def fail(field: str, message: str) -> None:
        errors.append(EventError(index, field, message))

    if not isinstance(raw, dict):
        fail("", "each event must be a JSON object.")
        return None
    before = len(errors)
    for field in sorted(set(raw) - EVENT_FIELDS):
        fail(field, "unknown field.")
    for field in ("event_id", "user_id"):
        value = raw.get(field)
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            fail(field, f"is required: text of 1 to {MAX_ID_LENGTH} characters.")
        elif "\x00" in value:
            fail(field, "contains a NUL character (\\u0000), which cannot be stored.")
    version_id = None
    try:
        version_id = uuid.UUID(str(raw.get("version_id")))
    except ValueError:
        fail("version_id", "is required: the version.id from the config response.")
    if not isinstance(raw.get("ok"), bool):
        fail("ok", "is required: true or false.")
    latency = _optional_number(index, raw, "latency_ms", fail, LATENCY_RANGE)
    score = _optional_number(index, raw, "score", fail, SCORE_RANGE)
    timestamp = now
    if raw.get("timestamp") is not None:
        parsed = _parse_timestamp(raw["timestamp"])
        if parsed is None:
            fail("timestamp", "must be an ISO 8601 date-time with a time zone, or Unix seconds.")
        elif parsed > now + FUTURE_TOLERANCE:
            fail("timestamp", "is in the future.")
        elif parsed < now - dt.timedelta(days=OUTCOME_DEDUP_DAYS):
            fail("timestamp", f"is older than {OUTCOME_DEDUP_DAYS} days.")
        else:
            timestamp = parsed
    if len(errors) > before:
        return None
    # Without a version_id, fail() recorded an error above.
    return OutcomeEvent(
        raw["event_id"],
        cast(uuid.UUID, version_id),
        raw["user_id"],
        raw["ok"],
        latency,
        score,
        timestamp,
    )


def _optional_number(
    index: int,
    raw: dict[str, Any],
    field: str,
    fail: Callable[[str, str], None],
    bounds: tuple[float, float],
) -> float | None:
    value = raw.get(field)
    if value is None or isinstance(value, str):
        # Text is not a number here, even "840": runtimes send JSON numbers.
        if value is not None:
            fail(field, "must be a number, not text.")
        return None
    try:
        number = check_number(
            value, field=f"events[{index}].{field}", minimum=bounds[0], maximum=bounds[1]
        )
    except InputError as exc:
        fail(field, f"{exc.message}.")
        return None
    return float(number)


def _parse_timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            return None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return None


def record_outcomes(
    *, agent: Agent, environment_id: int, events: list[OutcomeEvent]
) -> tuple[int, int]:
    """Store a validated batch; returns (accepted, duplicates).

    Raises InvalidBatch if an event names a version of another agent, VersionsNotServed
    if it names one the environment does not serve (see the module's invariants).
    """
    with transaction.atomic():
        known = dict(
            agent.versions.filter(pk__in={e.version_id for e in events}).values_list(
                "pk", "version_number"
            )
        )
        bad = [
            EventError(i, "version_id", f"is not a version of {agent.slug}.")
            for i, e in enumerate(events)
            if e.version_id not in known
        ]
        if bad:
            raise InvalidBatch(bad)
        now = timezone.now()
        pointer = _get_pointer(agent, environment_id)
        served = _served(agent, environment_id, set(known), pointer, now=now)
        unserved = [
            EventError(
                i,
                "version_id",
                f"event {e.event_id!r} is about v{known[e.version_id]} of {agent.slug}, which "
                "is neither its stable nor its canary version here (nor was in the last "
                f"{SERVED_GRACE.total_seconds() / 60:g} minutes).",
            )
            for i, e in enumerate(events)
            if e.version_id not in served
        ]
        if unserved:
            raise VersionsNotServed(unserved)

        new_ids = _insert_event_ids(agent.pk, environment_id, {e.event_id for e in events}, now)
        fresh: list[OutcomeEvent] = []
        for event in events:
            if event.event_id in new_ids:
                new_ids.discard(event.event_id)  # a repeat inside the batch counts once
                fresh.append(event)
        canary = pointer.canary if pointer is not None else None
        _add_counts(agent.pk, environment_id, fresh, canary.canary_version_id if canary else None)
    return len(fresh), len(events) - len(fresh)


def served_versions(
    agent: Agent, environment_id: int, asked: set[uuid.UUID], *, now: dt.datetime
) -> set[uuid.UUID]:
    """Which of `asked` the environment serves the agent, or stopped serving less than
    SERVED_GRACE before `now`. One query, two when a batch names an older version."""
    return _served(agent, environment_id, asked, _get_pointer(agent, environment_id), now=now)


def _get_pointer(agent: Agent, environment_id: int) -> Pointer | None:
    return (
        Pointer.objects.select_related("canary")
        .filter(agent=agent, environment_id=environment_id)
        .first()
    )


def _served(
    agent: Agent,
    environment_id: int,
    asked: set[uuid.UUID],
    pointer: Pointer | None,
    *,
    now: dt.datetime,
) -> set[uuid.UUID]:
    served: set[uuid.UUID] = set()
    if pointer is not None:
        served.add(pointer.stable_version_id)
        if pointer.canary is not None:
            served.add(pointer.canary.canary_version_id)
    if asked <= served:
        return asked
    # Every pointer move logs the versions it stops and starts serving (a deploy its old
    # stable, a canary's end its canary version): a version served at any moment of the
    # grace window is served now or named by a move inside the window.
    moves = ReleaseLogEntry.objects.filter(
        agent=agent, environment_id=environment_id, created_at__gte=now - SERVED_GRACE
    ).values_list("from_version_id", "to_version_id")
    served.update(version for move in moves for version in move if version is not None)
    return asked & served


def _insert_event_ids(
    agent_id: int, environment_id: int, event_ids: set[str], now: dt.datetime
) -> set[str]:
    """Remember the ids; returns those no other transaction has stored (or is storing)."""
    inserted = _insert(
        OutcomeEventId,
        ("agent", "environment", "event_id", "received_at"),
        # Sorted: concurrent batches take the ids' index entries in one order, so batches
        # that share ids may wait for one another but never in a cycle.
        [(agent_id, environment_id, event_id, now) for event_id in sorted(event_ids)],
        conflict=("agent", "environment", "event_id"),
        returning="event_id",
    )
    return {event_id for (event_id,) in inserted}


_BUCKET = ("agent", "environment", "version", "track", "bucket_start")
_INT_FIELDS = ("n", "errors", "latency_count", "score_count")
_FLOAT_FIELDS = ("latency_sum", "latency_sumsq", "score_sum", "score_sumsq")


def _add_counts(
    agent_id: int,
    environment_id: int,
    events: list[OutcomeEvent],
    canary_version_id: uuid.UUID | None,
) -> None:
    ints: dict[tuple[uuid.UUID, str, dt.datetime], list[int]] = {}
    floats: dict[tuple[uuid.UUID, str, dt.datetime], list[float]] = {}
    bins: Counter[tuple[uuid.UUID, str, dt.datetime, int]] = Counter()
    for event in events:
        track = Track.CANARY if event.version_id == canary_version_id else Track.STABLE
        key = (event.version_id, track.value, event.timestamp.replace(second=0, microsecond=0))
        if key not in ints:
            ints[key], floats[key] = [0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0]
        counts, sums = ints[key], floats[key]
        counts[0] += 1
        counts[1] += 0 if event.ok else 1
        if event.latency_ms is not None:
            counts[2] += 1
            sums[0] += event.latency_ms
            sums[1] += event.latency_ms**2
            bins[(*key, latency_bin(event.latency_ms))] += 1
        if event.score is not None:
            counts[3] += 1
            sums[2] += event.score
            sums[3] += event.score**2
    parent = (agent_id, environment_id)
    # Sorted keys for the same reason as the ids: one lock order for every batch.
    _insert(
        OutcomeCount,
        (*_BUCKET, *_INT_FIELDS, *_FLOAT_FIELDS),
        [(*parent, *key, *ints[key], *floats[key]) for key in sorted(ints)],
        conflict=_BUCKET,
        add=(*_INT_FIELDS, *_FLOAT_FIELDS),
    )
    _insert(
        OutcomeLatency,
        (*_BUCKET, "bin", "count"),
        [(*parent, *key, count) for key, count in sorted(bins.items())],
        conflict=(*_BUCKET, "bin"),
        add=("count",),
    )


def _insert(
    model: type[Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str],
    add: Sequence[str] = (),
    returning: str | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT `rows` in their order. A row that hits the unique constraint on `conflict`
    adds its `add` columns to the stored row's (atomically, per row), or is skipped without
    `add`. Returns the `returning` column of the rows inserted (not of those added to)."""
    if not rows:
        return []
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    # The names are the model's concrete columns, never a reverse relation.
    model_fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]

    def column(name: str) -> str:
        return quote(cast(str, cast("Field[Any, Any]", meta.get_field(name)).column))

    on_conflict = f"ON CONFLICT ({', '.join(column(name) for name in conflict)}) "
    if add:
        on_conflict += "DO UPDATE SET " + ", ".join(
            f"{column(name)} = {table}.{column(name)} + excluded.{column(name)}" for name in add
        )
    else:
        on_conflict += "DO NOTHING"
    if returning is not None:
        on_conflict += f" RETURNING {column(returning)}"
    # Names come from the model's _meta, quoted; every value is a parameter.
    head = f"INSERT INTO {table} ({', '.join(column(name) for name in fields)})"
    columns = [
        _adapt(field, values)
        for field, values in zip(model_fields, zip(*rows, strict=True), strict=True)
    ]
    if connection.vendor == "postgresql":
        statements = [_from_arrays(head, on_conflict, model_fields, columns)]
    else:
        statements = _from_values(head, on_conflict, columns)
    result: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for statement, params in statements:
            cursor.execute(statement, params)
            if returning is not None:
                result.extend(cursor.fetchall())
    return result


def _adapt(field: Field[Any, Any], values: Sequence[Any]) -> list[Any]:
    """The values as the database stores them (each distinct value adapted once)."""
    adapted = {value: field.get_db_prep_value(value, connection) for value in set(values)}
    return [adapted[value] for value in values]


def _from_arrays(
    head: str, on_conflict: str, fields: list[Field[Any, Any]], columns: list[list[Any]]
) -> tuple[str, list[Any]]:
    """PostgreSQL: one statement with a few parameters however many rows. psycopg finds a
    statement's placeholders in Python, which for a VALUES list of 1,000 rows took longer
    than the database's work. One array per column (unnest() yields the rows in the
    arrays' order); one value for a column that is the same in every row."""
    # Element types without a length ("varchar", not "varchar(200)"): a cast would cut a
    # longer value short, where storing it into the column refuses it.
    types = [str(field.db_type(connection)).split("(")[0] for field in fields]
    varying = [i for i, values in enumerate(columns) if len(set(values)) > 1] or [0]
    selected = ", ".join(
        f"u.c{i}" if i in varying else f"%s::{types[i]}" for i in range(len(fields))
    )
    arrays = ", ".join(f"%s::{types[i]}[]" for i in varying)
    names = ", ".join(f"c{i}" for i in varying)
    select = f"SELECT {selected} FROM unnest({arrays}) AS u({names})"  # noqa: S608
    params = [columns[i][0] for i in range(len(fields)) if i not in varying]
    return f"{head} {select} {on_conflict}", params + [columns[i] for i in varying]


def _from_values(
    head: str, on_conflict: str, columns: list[list[Any]]
) -> list[tuple[str, list[Any]]]:
    """SQLite: VALUES lists, each within max_query_params (999) parameters."""
    per_statement = (connection.features.max_query_params or 999) // len(columns)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    rows = list(zip(*columns, strict=True))
    return [
        (
            f"{head} VALUES {', '.join([placeholders] * len(chunk))} {on_conflict}",
            [value for row in chunk for value in row],
        )
        for chunk in (rows[i : i + per_statement] for i in range(0, len(rows), per_statement))
    ]
