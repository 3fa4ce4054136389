"""Evaluation-context attributes sent to the runtime config endpoint.

Two ways, which can be combined:

- query parameters prefixed with "ctx.":  ?ctx.country=DE&ctx.plan=pro
  Values are text; repeat a parameter for a list (ctx.groups=beta&ctx.groups=staff).
  Rules compare text with the rule value's type: "30" equals 30, "true" equals true.
- the header  X-Agentconfig-Context: {"country": "DE", "seats": 12, "beta": true}
  a JSON object, or the same JSON encoded as base64url (padding optional) when the
  values are not ASCII (HTTP header values are ASCII in practice).

Invariants:
- The result is a flat dict of attribute -> text, number, true/false or a list of those;
  anything else is refused with a ContextError that says what and where, never
  silently dropped (a dropped attribute would quietly change who gets a flag).
- The same attribute in both places is an error rather than a silent precedence rule.
- "targetingKey" is reserved: the user's id travels separately (the config endpoint's
  ?user_id= parameter, OFREP's context.targetingKey).
- Bounded: at most MAX_ATTRIBUTES attributes, MAX_HEADER characters of header; the
  header's JSON is read by agentconfig.core.safe_parse (size and depth before parsing, no
  NaN, no duplicate keys).

Pure module (no Django).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

from agentconfig.core.safe_parse import SYNTAX, InputError, load_json

CONTEXT_HEADER = "X-Agentconfig-Context"
QUERY_PREFIX = "ctx."
RESERVED = ("targetingKey",)
MAX_ATTRIBUTES = 100
MAX_NAME = 100
MAX_VALUE = 1_000
MAX_LIST = 100
MAX_HEADER = 8_192


class ContextError(ValueError):
    """The context cannot be read; the message says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_context(query: Mapping[str, Any], header: str | None) -> dict[str, Any]:
    """Context attributes from the query parameters ("ctx.*") and the context header.

    `query` is request.GET (a QueryDict: repeated parameters become lists) or any
    mapping of name to text or list of text; `header` is the raw header value or None.
    """
    from_query = _from_query(query)
    from_header = _from_header(header) if header is not None and header.strip() else {}
    both = sorted(set(from_query) & set(from_header))
    if both:
        raise ContextError(
            f"the attribute {both[0]!r} is given both as the query parameter "
            f"{QUERY_PREFIX}{both[0]} and in the {CONTEXT_HEADER} header; send it once."
        )
    context = {**from_header, **from_query}
    if len(context) > MAX_ATTRIBUTES:
        raise ContextError(
            f"the context has {len(context)} attributes; the maximum is {MAX_ATTRIBUTES}."
        )
    return context


def _from_query(query: Mapping[str, Any]) -> dict[str, Any]:
    getlist = getattr(query, "getlist", None)
    out: dict[str, Any] = {}
    for parameter in query:
        if not isinstance(parameter, str) or not parameter.startswith(QUERY_PREFIX):
            continue
        name = parameter.removeprefix(QUERY_PREFIX)
        where = f"query parameter {parameter!r}"
        _check_name(name, where)
        raw = getlist(parameter) if getlist is not None else query[parameter]
        values = raw if isinstance(raw, list | tuple) else [raw]
        if not all(isinstance(v, str) for v in values):
            raise ContextError(f"{where}: values must be text.")
        value: Any = values[0] if len(values) == 1 else list(values)
        out[name] = _check_value(value, where)
    return out


def _from_header(header: str) -> dict[str, Any]:
    text = header.strip()
    if len(text) > MAX_HEADER:
        raise ContextError(
            f"the {CONTEXT_HEADER} header is {len(text):,} characters long; "
            f"the maximum is {MAX_HEADER:,}."
        )
    if not text.startswith("{"):
        try:
            padded = text + "=" * (-len(text) % 4)
            text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ContextError(
                f"the {CONTEXT_HEADER} header must be a JSON object or base64url-encoded "
                "JSON; it is neither."
            ) from None
    try:
        # Latin-1 header characters take at most 2 bytes in UTF-8: the character limit
        # above is the one people meet.
        data = load_json(text, max_bytes=2 * MAX_HEADER, where=f"the {CONTEXT_HEADER} header")
    except InputError as exc:
        if exc.kind == SYNTAX:
            raise ContextError(f"the {CONTEXT_HEADER} header is {exc.message}.") from None
        raise ContextError(f"{exc}.") from None
    if not isinstance(data, dict):
        raise ContextError(f"the {CONTEXT_HEADER} header must hold a JSON object ({{…}}).")
    out = {}
    for name, value in data.items():
        where = f"{CONTEXT_HEADER} attribute {name!r}"
        _check_name(name, where)
        out[name] = _check_value(value, where)
    return out


def _check_name(name: str, where: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise ContextError(f"{where}: attribute names are 1-{MAX_NAME} characters long.")
    if name in RESERVED:
        raise ContextError(
            f"{where}: {name!r} is reserved; send the user's id as the user_id query "
            "parameter, not as a context attribute."
        )


def _check_value(value: Any, where: str) -> Any:
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise ContextError(f"{where}: lists hold at most {MAX_LIST} values.")
        for item in value:
            _check_scalar(item, where)
        return value
    _check_scalar(value, where)
    return value


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            raise ContextError(f"{where}: values are at most {MAX_VALUE:,} characters long.")
        return
    if isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
        return
    kind = "an object" if isinstance(value, dict) else "null" if value is None else "a list"
    raise ContextError(
        f"{where}: values are text, numbers, true/false or a list of those, not {kind}. "
        "Send flat attributes, e.g. plan instead of user.plan inside an object."
    )
