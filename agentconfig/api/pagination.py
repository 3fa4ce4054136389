"""Cursor pagination: `?limit=N&cursor=...`, answered with `items` and `next_cursor`.

A cursor is the last item's sort key, encoded; it stays correct when rows are added
between pages (no skipped or repeated rows, unlike offsets).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from ninja import Schema
from pydantic import Field

from agentconfig.core.errors import ServiceError

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type) -> Any:
    """The sort key in `cursor` (None for the first page); 400 for one we did not give."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)["after"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        key = None
    if not isinstance(key, kind) or isinstance(key, bool):
        raise ServiceError(
            "the cursor is not one this API gave; start again without it and follow `next_cursor`."
        )
    return key


def page_of(rows: Iterable[T], limit: int, key_of: Callable[[T], Any]) -> dict[str, Any]:
    """A Page of the first `limit` of `rows` (pass limit + 1 of them: one more tells
    whether there is a next page) and the cursor after them."""
    fetched = list(rows)
    items = fetched[:limit]
    more = len(fetched) > limit and bool(items)
    return {"items": items, "next_cursor": encode_cursor(key_of(items[-1])) if more else None}
