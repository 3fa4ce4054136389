"""The change feed: the one source of truth for "what runtimes receive has changed".

Writers call `record_change` inside the transaction of the write itself; server processes
read the feed with a `FeedReader` (docs/decisions/0014-runtime-delivery.md).

Invariants:
- A change row is inserted in the same transaction as the write it describes, so a change
  never commits without its row and a rolled-back write leaves none (no on_commit hop).
- A reader sees every committed row exactly once, whatever order concurrent writers
  commit in:
  - PostgreSQL assigns ids when rows are inserted, not when they commit, so a reader that
    only asked for "id > last seen" could skip a row that committed late. Each row carries
    its transaction id; a poll asks for every row whose transaction is at least the oldest
    one that was still running at the previous poll (`pg_snapshot_xmin`), and skips the
    rows it has already seen. Transactions older than that horizon had all ended, so their
    rows were all visible then.
  - SQLite serialises writers (IMMEDIATE transactions), so ids are assigned in commit
    order and "id > last seen" is exact.
- Reading is one small indexed query per poll; it returns only new rows (plus, on
  PostgreSQL, the few rows of transactions that were still open at the previous poll).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from agentconfig.models import Agent, Change, ChangeTopic

# Called with no argument whenever this process records a change: the process that made
# a change serves it at once (its snapshot refreshes on the next request), instead of at
# its next poll. Registered from above (delivery.snapshot); never needed for correctness.
_local_listeners: list[Callable[[], None]] = []


def on_local_change(listener: Callable[[], None]) -> None:
    """Register a callable run when this process records a change (and when it commits)."""
    _local_listeners.append(listener)


def record_change(
    *,
    topic: ChangeTopic,
    agent: Agent | int | None = None,
    environment_id: int | None = None,
    api_key_id: str = "",
) -> None:
    """Record that runtimes' answers change: call inside the write's own transaction.

    `agent` None means every agent, `environment_id` None every environment.
    """
    if not connection.in_atomic_block:
        # Outside a transaction the write and its row could commit apart.
        raise RuntimeError("record_change must run inside the transaction of the write")
    agent_id = agent.pk if isinstance(agent, Agent) else agent
    fields: dict[str, object] = {}
    if connection.vendor == "postgresql":
        fields["transaction_id"] = RawSQL("pg_current_xact_id()::text::bigint", [])
    Change.objects.create(
        topic=topic,
        agent_id=agent_id,
        environment_id=environment_id,
        api_key_id=api_key_id,
        **fields,
    )
    _notify_local()
    transaction.on_commit(_notify_local)


def _notify_local() -> None:
    for listener in _local_listeners:
        listener()


@dataclass(frozen=True)
class ChangeRow:
    """One change as a reader sees it (the agent by slug: documents are keyed by slug)."""

    id: int
    topic: str
    agent_slug: str | None
    environment_id: int | None
    api_key_id: str


_COLUMNS = "c.id, c.topic, a.slug, c.environment_id, c.api_key_id"

# One round trip: the horizon of this statement's snapshot, and every row at or after the
# previous horizon (or, with NULL, after this one: the start position). LEFT JOIN from the
# horizon so a poll with no change still returns it.
_POSTGRES_POLL = f"""
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
SELECT horizon.xmin, c.transaction_id, {_COLUMNS}
FROM horizon
LEFT JOIN {Change._meta.db_table} c
    ON c.transaction_id >= COALESCE(%s::bigint, horizon.xmin)
LEFT JOIN {Agent._meta.db_table} a ON a.id = c.agent_id
"""  # noqa: S608 (table names come from the models, the value is a parameter)

_SQLITE_POLL = f"""
SELECT {_COLUMNS}
FROM {Change._meta.db_table} c
LEFT JOIN {Agent._meta.db_table} a ON a.id = c.agent_id
WHERE c.id > %s
ORDER BY c.id
"""  # noqa: S608

_SQLITE_START = f"SELECT COALESCE(MAX(id), 0) FROM {Change._meta.db_table}"  # noqa: S608


class FeedReader:
    """One process's position in the feed. Not thread-safe: the caller serialises polls."""

    def __init__(self) -> None:
        self.started = False
        self._horizon: int | None = None  # PostgreSQL: oldest transaction to ask about
        self._seen: set[int] = set()  # PostgreSQL: rows already returned at/after it
        self._last_id = 0  # SQLite: the last id returned

    def start(self) -> None:
        """Position the reader at the present: only changes committed after this count."""
        if connection.vendor == "postgresql":
            rows = self._postgres_rows(None)
            self._seen = {row[2] for row in rows if row[2] is not None}
            self._horizon = rows[0][0]
        else:
            with connection.cursor() as cursor:
                cursor.execute(_SQLITE_START)
                self._last_id = cursor.fetchone()[0]
        self.started = True

    def poll(self) -> list[ChangeRow]:
        """The changes committed since the previous poll (or since `start`), oldest first."""
        if not self.started:
            raise RuntimeError("start the reader before polling it")
        if connection.vendor == "postgresql":
            return self._poll_postgres()
        with connection.cursor() as cursor:
            cursor.execute(_SQLITE_POLL, [self._last_id])
            changes = [ChangeRow(*row) for row in cursor.fetchall()]
        if changes:
            self._last_id = changes[-1].id
        return changes

    def _poll_postgres(self) -> list[ChangeRow]:
        rows = self._postgres_rows(self._horizon)
        horizon = rows[0][0]
        changes = [
            ChangeRow(*row[2:])
            for row in sorted(rows, key=lambda r: r[2] or 0)
            if row[2] is not None and row[2] not in self._seen
        ]
        # Rows of transactions older than the new horizon will not be asked for again.
        self._seen = {row[2] for row in rows if row[2] is not None and row[1] >= horizon}
        self._horizon = horizon
        return changes

    def _postgres_rows(self, horizon: int | None) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(_POSTGRES_POLL, [horizon])
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows
