"""Outcome reporting: runtimes say how each answer went; we keep counts, not events.

Invariants:
- A batch is validated whole before anything is stored; one bad event rejects the
  batch, and the error names each bad event's index and field.
- Numbers are finite and within each field's range (LATENCY_RANGE, SCORE_RANGE), so the
  sums of squares the analysis keeps can never overflow; ids are text without NUL, so
  bad input is refused here rather than by the database.
- `event_id` makes a retried batch count once: ids are kept OUTCOME_DEDUP_DAYS, and
  events older than that are refused (a retry after the ids are gone would count twice).
- Counts are added per (agent, environment, version, track, minute) under the agent-row
  lock, so concurrent batches cannot lose increments.
- Events count only for versions the environment serves the agent: its stable or canary
  version now, or one that stopped being served less than SERVED_GRACE ago (answers
  still in flight). Anything else is refused whole (VersionsNotServed, HTTP 422).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agentconfig.models import Agent
from agentconfig.safe_parse import InputError, check_number
from deployments.models import OutcomeCount, OutcomeEventId, Pointer, ReleaseLogEntry, Track
from deployments.models.canary import OUTCOME_DEDUP_DAYS

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
    return OutcomeEvent(
        raw["event_id"], version_id, raw["user_id"], raw["ok"], latency, score, timestamp
    )


def _optional_number(
    index: int, raw: dict, field: str, fail: Any, bounds: tuple[float, float]
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
        # Serialises batches of this agent: the duplicate check and the counter
        # increments below must not interleave with another batch's.
        Agent.objects.select_for_update().only("pk").get(pk=agent.pk)
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
        served = served_versions(agent, environment_id, set(known), now=timezone.now())
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

        seen = set(
            OutcomeEventId.objects.filter(
                agent=agent,
                environment_id=environment_id,
                event_id__in={e.event_id for e in events},
            ).values_list("event_id", flat=True)
        )
        fresh: list[OutcomeEvent] = []
        for event in events:
            if event.event_id not in seen:
                seen.add(event.event_id)  # also drops repeats inside the batch
                fresh.append(event)
        now = timezone.now()
        OutcomeEventId.objects.bulk_create(
            [
                OutcomeEventId(
                    agent=agent, environment_id=environment_id, event_id=e.event_id, received_at=now
                )
                for e in fresh
            ]
        )
        _add_counts(agent, environment_id, fresh)
    return len(fresh), len(events) - len(fresh)


def served_versions(
    agent: Agent, environment_id: int, asked: set[uuid.UUID], *, now: dt.datetime
) -> set[uuid.UUID]:
    """Which of `asked` the environment serves the agent, or stopped serving less than
    SERVED_GRACE before `now`. One query, two when a batch names an older version."""
    pointer = (
        Pointer.objects.select_related("canary")
        .filter(agent=agent, environment_id=environment_id)
        .first()
    )
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


def _add_counts(agent: Agent, environment_id: int, events: list[OutcomeEvent]) -> None:
    pointer = (
        Pointer.objects.select_related("canary")
        .filter(agent=agent, environment_id=environment_id)
        .first()
    )
    canary_version_id = pointer.canary.canary_version_id if pointer and pointer.canary else None
    sums: dict[tuple[uuid.UUID, str, dt.datetime], dict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for event in events:
        track = Track.CANARY if event.version_id == canary_version_id else Track.STABLE
        minute = event.timestamp.replace(second=0, microsecond=0)
        row = sums[(event.version_id, track, minute)]
        row["n"] += 1
        row["errors"] += 0 if event.ok else 1
        if event.latency_ms is not None:
            row["latency_count"] += 1
            row["latency_sum"] += event.latency_ms
            row["latency_sumsq"] += event.latency_ms**2
        if event.score is not None:
            row["score_count"] += 1
            row["score_sum"] += event.score
            row["score_sumsq"] += event.score**2
    if not sums:
        return
    existing = {
        (row.version_id, row.track, row.bucket_start): row
        for row in OutcomeCount.objects.filter(
            agent=agent,
            environment_id=environment_id,
            version_id__in={key[0] for key in sums},
            bucket_start__in={key[2] for key in sums},
        )
    }
    to_update, to_create = [], []
    for (version_id, track, minute), increments in sums.items():
        row = existing.get((version_id, track, minute))
        if row is None:
            row = OutcomeCount(
                agent=agent,
                environment_id=environment_id,
                version_id=version_id,
                track=track,
                bucket_start=minute,
            )
            to_create.append(row)
        else:
            to_update.append(row)
        for name, value in increments.items():
            setattr(row, name, getattr(row, name) + (int(value) if name in _INT_FIELDS else value))
    OutcomeCount.objects.bulk_create(to_create)
    OutcomeCount.objects.bulk_update(to_update, [*_INT_FIELDS, *_FLOAT_FIELDS])


_INT_FIELDS = ("n", "errors", "latency_count", "score_count")
_FLOAT_FIELDS = ("latency_sum", "latency_sumsq", "score_sum", "score_sumsq")
