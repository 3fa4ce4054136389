"""Cache helpers of the read paths (runtime endpoint, OFREP).

- `LocalCopies`: this process's copies of immutable cached values, by a key that
  names their generation (read from the shared cache on every request), so a copy is
  never stale; bounded in size, and kept no longer than the shared entry.
- `cache_get`, `cache_get_many`, `cache_add`: the shared cache, where a failure is a
  miss (logged), never an error: a cache that is down must not take the endpoints down
  while the database is up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from django.core.cache import cache

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LocalCopies(Generic[T]):
    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: T, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception:
        logger.warning("cache read failed; using the database", exc_info=True)
        return None


def cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except Exception:
        logger.warning("cache read failed; using the database", exc_info=True)
        return {}


def cache_add(key: str, value: Any, timeout: float | None) -> None:
    try:
        cache.add(key, value, timeout)
    except Exception:
        logger.warning("cache write failed", exc_info=True)
