"""This process's snapshot of what runtimes receive: API keys, config documents, OFREP flags.

The read paths (config endpoint, outcomes' key check, OFREP) answer from here; the
database is read only to refresh the snapshot from the change feed and to build what a
change dropped (docs/decisions/0014-runtime-delivery.md).

Invariants:
- While the snapshot is fresh (refreshed less than AGENTCONFIG_REFRESH_INTERVAL ago) a
  read does no I/O: key entries, documents and OFREP snapshots come from memory.
- The snapshot is refreshed at most once per interval, by the request that finds it
  stale; other threads keep serving meanwhile. An idle process makes no query. A change
  made by this process is served by it at once (the feed's local listener).
- A refresh reads the feed and drops exactly what changed; a changed key is reloaded,
  with its scope (agents, can_read, can_report), so a request is judged against the scope
  from memory. Every active key is known, so an unknown key is refused from memory and
  leaves no state.
- A value is stored only if no change touching it was applied while it was being built:
  a build that read the state before a change must not outlive the change.
- After a change each value is built once per process (single flight), not per request.
- When the feed cannot be read (database down) the last snapshot keeps serving — it is
  still the truth as of its last refresh — `age` says how old it is, a retry happens at
  most once per interval, and the outage is logged once, not per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from agentconfig.core.change_feed import ChangeRow, FeedReader, on_local_change
from agentconfig.models import ChangeTopic
from delivery.runtime import Document, KeyEntry, build_document
from deployments.models import ApiKey
from deployments.services.api_keys import hash_key, key_id_of

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Compared against when no key matches, so an unknown key costs the same as a wrong one.
_DUMMY_HASH = hashlib.sha256(b"agentconfig-no-such-key").hexdigest()
# Error answers (unknown agent, not deployed) are kept too, but at most this many: an
# authenticated client asking for random slugs must not grow the process without bound.
MAX_ERROR_ENTRIES = 1000
# Builds of different values run in parallel; builds of one value queue (single flight).
_BUILD_STRIPES = 64

# Keys of stored values: ("doc", environment id, agent slug) and ("ofrep", environment id).
EntryKey = tuple[Any, ...]


class SnapshotUnavailable(Exception):
    """Nothing is known yet and the database cannot be read: answer 503, never a default."""


@dataclass(frozen=True)
class _StoredKey:
    key_hash: str
    entry: KeyEntry


class Snapshot:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the dictionaries below
        self._refresh_lock = threading.Lock()
        self._build_locks = [threading.Lock() for _ in range(_BUILD_STRIPES)]
        self._reader = FeedReader()
        self._keys: dict[str, _StoredKey] | None = None  # None: not loaded yet
        self._values: dict[EntryKey, Any] = {}
        self._errors: dict[EntryKey, Any] = {}
        self._building: dict[EntryKey, bool] = {}  # value being built -> dropped meanwhile
        self._refreshed_at = -math.inf  # monotonic time of the last successful refresh
        self._retry_at = -math.inf
        self._poked = False
        self.failing = False

    # --- freshness ------------------------------------------------------------------

    def ensure_fresh(self) -> None:
        """Refresh from the feed if the snapshot is older than the interval (see module doc)."""
        now = time.monotonic()
        if not self._poked and now - self._refreshed_at < settings.AGENTCONFIG_REFRESH_INTERVAL:
            return
        if now < self._retry_at:
            # The last attempt failed: serve what we have (or refuse at once, if nothing)
            # until the retry time, instead of a database attempt per request.
            return
        loaded = self._keys is not None
        # Before the first load there is nothing to serve, so wait for whoever loads it.
        if not self._refresh_lock.acquire(blocking=not loaded):
            return
        try:
            if self._keys is not None and self._refreshed_at >= now and not self._poked:
                return  # refreshed by another thread while this one waited
            self._refresh()
        finally:
            self._refresh_lock.release()

    def poke(self) -> None:
        """Refresh on the next read (this process has just changed something)."""
        self._poked = True

    @property
    def age(self) -> float:
        """Seconds since the last successful refresh (infinite before the first one)."""
        return time.monotonic() - self._refreshed_at

    def _refresh(self) -> None:
        started = time.monotonic()
        self._poked = False
        _db_ready()
        try:
            if self._keys is None:
                self._load()
            else:
                self._apply(self._reader.poll())
        except DatabaseError as exc:
            self._retry_at = started + settings.AGENTCONFIG_REFRESH_INTERVAL
            if not self.failing:
                logger.error(
                    "cannot read the change feed (%s); serving the last snapshot until the "
                    "database answers again",
                    exc,
                )
            self.failing = True
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            return
        if self.failing:
            logger.warning("the change feed is readable again; the snapshot is current")
        self.failing = False
        self._refreshed_at = started

    def _load(self) -> None:
        # Position the reader first: whatever commits after this is seen by the next poll.
        reader = FeedReader()
        reader.start()
        keys = {row[0]: row[1] for row in _load_keys(None)}
        with self._lock:
            self._reader = reader
            self._keys = keys
            self._values.clear()
            self._errors.clear()
            for building in self._building:
                self._building[building] = True

    def _apply(self, changes: list[ChangeRow]) -> None:
        if not changes:
            return
        key_ids = {c.api_key_id for c in changes if c.topic == ChangeTopic.API_KEY}
        reloaded = dict(_load_keys(key_ids)) if key_ids else {}
        with self._lock:
            assert self._keys is not None  # noqa: S101 (_refresh loads before applying)
            for key_id in key_ids:
                if key_id in reloaded:
                    self._keys[key_id] = reloaded[key_id]
                else:
                    self._keys.pop(key_id, None)  # revoked (or never committed)
            for store in (self._values, self._errors):
                for entry_key in [k for k in store if _touches(changes, k)]:
                    del store[entry_key]
            for entry_key in self._building:
                if _touches(changes, entry_key):
                    self._building[entry_key] = True

    # --- reads ----------------------------------------------------------------------

    def authenticate(self, raw_key: str) -> KeyEntry | None:
        """The key's environment and scope, or None if unknown or revoked (no I/O)."""
        keys = self._keys
        if keys is None:
            raise SnapshotUnavailable
        key_id = key_id_of(raw_key)
        stored = keys.get(key_id) if key_id is not None else None
        expected = stored.key_hash if stored is not None else _DUMMY_HASH
        matches = hmac.compare_digest(hash_key(raw_key), expected)
        return stored.entry if matches and stored is not None else None

    def get(self, entry_key: EntryKey, build: Callable[[], T]) -> T:
        """The stored value, or `build()` once per process; stored unless dropped meanwhile.

        A value with a `status` other than 200 (an error document) counts against
        MAX_ERROR_ENTRIES.
        """
        value = self._values.get(entry_key)
        if value is None:
            value = self._errors.get(entry_key)
        if value is not None:
            return value
        with self._build_locks[hash(entry_key) % _BUILD_STRIPES]:
            value = self._values.get(entry_key) or self._errors.get(entry_key)
            if value is not None:
                return value
            with self._lock:
                self._building[entry_key] = False
            _db_ready()
            try:
                value = build()
            finally:
                with self._lock:
                    dropped = self._building.pop(entry_key, True)
            if not dropped:
                self._store(entry_key, value)
            return value

    def _store(self, entry_key: EntryKey, value: Any) -> None:
        error = getattr(value, "status", 200) != 200
        with self._lock:
            if not error:
                self._values[entry_key] = value
                return
            if len(self._errors) >= MAX_ERROR_ENTRIES:
                self._errors.clear()
            self._errors[entry_key] = value

    def reset(self) -> None:
        """Forget everything (tests; a forked child): the next read loads afresh."""
        with self._lock:
            self._keys = None
            self._values.clear()
            self._errors.clear()
            for building in self._building:
                self._building[building] = True
            self._reader = FeedReader()
            self._refreshed_at = -math.inf
            self._retry_at = -math.inf
            self._poked = False
            self.failing = False


def _db_ready() -> None:
    """What Django's request signals do for connections, before this path reads the
    database (the lean WSGI path sends none): drop a connection that is broken or past
    CONN_MAX_AGE, so the query reconnects instead of failing."""
    if not connection.in_atomic_block:
        close_old_connections()


def _touches(changes: Iterable[ChangeRow], entry_key: EntryKey) -> bool:
    """Whether any of `changes` can change the value stored under `entry_key`."""
    kind, environment_id = entry_key[0], entry_key[1]
    slug = entry_key[2] if kind == "doc" else None
    for change in changes:
        if change.environment_id is not None and change.environment_id != environment_id:
            continue
        if change.topic == ChangeTopic.AGENT and kind == "doc" and change.agent_slug == slug:
            return True
        if change.topic == ChangeTopic.FLAGS and (
            kind == "ofrep" or change.agent_slug is None or change.agent_slug == slug
        ):
            return True
    return False


def _load_keys(key_ids: set[str] | None) -> list[tuple[str, _StoredKey]]:
    """Active keys (all, or these ids) with their scopes: one query.

    The agents come in the same query (a left join: one row per key and agent, one row
    with no agent for a key that serves every agent), so a key costs no query of its own.
    """
    keys = ApiKey.objects.filter(revoked_at__isnull=True)
    if key_ids is not None:
        keys = keys.filter(key_id__in=key_ids)
    rows = keys.values_list(
        "key_id",
        "key_hash",
        "environment_id",
        "environment__slug",
        "can_read",
        "can_report",
        "agents__id",
        "agents__slug",
    )
    columns: dict[str, tuple[str, int, str, bool, bool]] = {}
    agents: dict[str, dict[int, str]] = {}
    for key_id, key_hash, environment_id, slug, can_read, can_report, agent_id, agent in rows:
        columns[key_id] = (key_hash, environment_id, slug, can_read, can_report)
        scoped = agents.setdefault(key_id, {})
        if agent_id is not None:
            scoped[agent_id] = agent
    return [
        (
            key_id,
            _StoredKey(
                key_hash,
                KeyEntry(
                    environment_id,
                    slug,
                    agent_ids=frozenset(agents[key_id]),
                    agent_slugs=frozenset(agents[key_id].values()),
                    can_read=can_read,
                    can_report=can_report,
                ),
            ),
        )
        for key_id, (key_hash, environment_id, slug, can_read, can_report) in columns.items()
    ]


def get_document(key: KeyEntry, agent_slug: str) -> Document:
    """The config document for this environment and agent: from this process's snapshot,
    or built once from the database after a change dropped it."""
    return snapshot.get(
        ("doc", key.environment_id, agent_slug), lambda: build_document(key, agent_slug)
    )


# One snapshot per process. A forked child (gunicorn --preload) must not share the
# parent's position or locks.
snapshot = Snapshot()
on_local_change(snapshot.poke)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=snapshot.reset)
