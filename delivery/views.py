"""The runtime API (config and outcomes) and the health check: plain function views.

Runtimes authenticate with `Authorization: Bearer <key>` and never with cookies, so
these views are exempt from CSRF: a forged cross-site request carries no credential.

Hostile input is answered with a 4xx JSON error, never a 500: bodies are read by
agentconfig.core.safe_parse (size and depth before parsing), NUL is refused before any query,
and a database error is answered as what it is (`database_error`): 503 only when the
database is unreachable, 400 when it refused a value, otherwise a logged JSON 500.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from agentconfig.core.safe_parse import SYNTAX, InputError, load_json
from agentconfig.models import Agent
from delivery import history, runtime
from delivery.snapshot import SnapshotUnavailable, get_document, snapshot
from deployments.models import Environment
from deployments.services import outcomes
from deployments.services.api_keys import key_id_of
from flags.context import CONTEXT_HEADER, ContextError, parse_context

ALLOWED_METHODS = ("GET", "HEAD")
HISTORY_PERMISSION = "deployments.view_releaselogentry"
# Longer than any key we issue (acfg_ + 12 + _ + at most 100): refused without hashing.
MAX_KEY_LENGTH = 200
MAX_USER_ID = 256
# 1,000 events of a few hundred bytes each, with room to spare.
MAX_OUTCOMES_BYTES = 1_000_000
# Sent when the snapshot could not be refreshed recently (database unreachable): how many
# seconds old the answer may be.
SNAPSHOT_AGE_HEADER = "Agentconfig-Snapshot-Age"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Raw:
    """A response as plain data, so the lean WSGI path can send it without HttpResponse."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@csrf_exempt
def agent_config(request: HttpRequest, slug: str) -> HttpResponse:
    """GET /api/v1/agents/<slug>/config: the active config for the key's environment."""
    if request.method in ALLOWED_METHODS and "at" in request.GET:
        return _config_at(request, slug)
    return to_http(
        answer_config(
            request.method or "",
            slug,
            request.GET,
            request.headers.get("Authorization", ""),
            request.headers.get(CONTEXT_HEADER),
            request.headers.get("If-None-Match", ""),
        )
    )


def answer_config(
    method: str,
    slug: str,
    query: Mapping[str, Any],
    authorization: str,
    context_header: str | None,
    if_none_match: str,
) -> Raw:
    """The config endpoint's answer (every path calls this: the view and the lean WSGI
    path). No I/O while the snapshot is fresh; the request is checked before any I/O."""
    if method not in ALLOWED_METHODS:
        return _raw_error(
            405,
            "method_not_allowed",
            f"use {' or '.join(ALLOWED_METHODS)}.",
            [("Allow", ", ".join(ALLOWED_METHODS))],
        )
    raw_key = _token(authorization)
    if raw_key is None:
        return _raw_unauthorized("missing_api_key", _MISSING_KEY)
    if len(raw_key) > MAX_KEY_LENGTH or key_id_of(raw_key) is None:
        return _raw_unauthorized("invalid_api_key", _INVALID_KEY)
    user_id = query.get("user_id") or None
    if user_id is not None and len(user_id) > MAX_USER_ID:
        return _raw_error(
            400,
            "invalid_user_id",
            f"user_id is {len(user_id):,} characters long; the maximum is {MAX_USER_ID}.",
        )
    try:
        context = (
            parse_context(query, context_header) if _has_context(query, context_header) else {}
        )
    except ContextError as exc:
        return _raw_error(400, "invalid_context", exc.message)
    try:
        key = authenticate(raw_key)
        if key is None:
            return _raw_unauthorized("invalid_api_key", _INVALID_KEY)
        # Before the document: a key never costs a build of what it may not read.
        refusal = runtime.scope_refusal(key, slug, reporting=False)
        if refusal is not None:
            return _raw_error(403, *refusal)
        document = get_document(key, slug)
    except SnapshotUnavailable:
        return _raw_error(503, "database_unavailable", _UNAVAILABLE)
    except DatabaseError as exc:
        return _raw_error(*database_error(exc, f"the config of {slug}"))
    return answer_document(document, user_id, context, if_none_match)


def _has_context(query: Mapping[str, Any], context_header: str | None) -> bool:
    # Most runtimes send no context: skip parsing then.
    return bool(context_header) or any(name.startswith("ctx.") for name in query)


def answer_document(
    document: runtime.Document, user_id: str | None, context: dict[str, Any], if_none_match: str
) -> Raw:
    """The answer of `document` for this user and context, with its caching headers."""
    headers = [("Content-Type", _JSON), ("Vary", _VARY)]
    if snapshot.failing:
        headers.append((SNAPSHOT_AGE_HEADER, str(int(snapshot.age))))
    if document.status != 200:
        return Raw(document.status, headers, document.body)
    answer = document.answer(user_id, context)
    headers += [("ETag", answer.etag), ("Cache-Control", _CACHE_CONTROL())]
    if _matches(if_none_match, answer.etag):
        return Raw(304, headers[1:], b"")
    return Raw(200, headers, answer.body)


def _CACHE_CONTROL() -> str:
    return f"private, max-age={settings.AGENTCONFIG_RUNTIME_MAX_AGE}"


def to_http(raw: Raw) -> HttpResponse:
    """The Django response of a Raw answer (the view path)."""
    response = HttpResponse(raw.body, status=raw.status)
    if raw.status == 304:
        del response["Content-Type"]
    for name, value in raw.headers:
        response[name] = value
    return response


def _token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _raw_error(
    status: int, code: str, message: str, extra: list[tuple[str, str]] | None = None
) -> Raw:
    headers = [
        ("Content-Type", _JSON),
        ("Cache-Control", "no-store"),
        ("Vary", _VARY),
        *(extra or []),
    ]
    return Raw(status, headers, runtime.error_body(code, message))


def _raw_unauthorized(code: str, message: str) -> Raw:
    return _raw_error(status=401, code=code, message=message, extra=[_WWW_AUTHENTICATE])


def authenticate(raw_key: str) -> runtime.KeyEntry | None:
    """The key's environment from a fresh snapshot (no I/O while it is fresh); None if
    unknown or revoked. Raises SnapshotUnavailable when nothing is known yet."""
    snapshot.ensure_fresh()
    return snapshot.authenticate(raw_key)


def _config_at(request: HttpRequest, slug: str) -> HttpResponse:
    """`?at=<ISO 8601>`: what the endpoint answered this user at that moment (audits).

    For a key of the environment, or a signed-in user allowed to read the release log
    (who names the environment with `?environment=`).
    """
    try:
        at = parse_datetime(request.GET["at"])
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        return _error(
            400,
            "invalid_at",
            "at must be an ISO 8601 date-time with a time zone, e.g. 2026-09-03T14:02:00Z "
            "(in a URL, write a '+' offset as %2B).",
        )
    try:
        # In UTC, as the database compares it: 0001-01-01T00:00+23:59 is in year 0.
        at = at.astimezone(dt.UTC)
    except OverflowError:
        return _error(400, "invalid_at", "at is out of range: give a date-time in years 1-9999.")
    if at > timezone.now():
        return _error(400, "invalid_at", "at is in the future; leave it out for the present.")
    try:
        key = _history_reader(request)
        if isinstance(key, HttpResponse):
            return key
        refusal = runtime.scope_refusal(key, slug, reporting=False)
        if refusal is not None:
            return _error(403, *refusal)
        document = history.build_document_at(key, slug, at)
    except DatabaseError as exc:
        return _error(*database_error(exc, f"the config of {slug} at {at.isoformat()}"))
    try:
        context = parse_context(request.GET, request.headers.get(CONTEXT_HEADER))
    except ContextError as exc:
        return _error(400, "invalid_context", exc.message)
    user_id = request.GET.get("user_id") or None
    return to_http(
        answer_document(document, user_id, context, request.headers.get("If-None-Match", ""))
    )


def _history_reader(request: HttpRequest) -> runtime.KeyEntry | HttpResponse:
    raw_key = _bearer_token(request)
    if raw_key is not None:
        try:
            key = authenticate(raw_key)
        except SnapshotUnavailable:
            return _database_unavailable()
        return key if key is not None else _invalid_key()
    user = request.user
    if not user.is_authenticated:
        return _missing_key()
    if not user.has_perm(HISTORY_PERMISSION):
        return _error(403, "forbidden", f"reading past configs needs {HISTORY_PERMISSION!r}.")
    slug = request.GET.get("environment", "")
    environment = None if "\x00" in slug else Environment.objects.filter(slug=slug).first()
    if environment is None:
        return _error(400, "invalid_environment", "name the environment: ?environment=<slug>.")
    return runtime.KeyEntry(environment.pk, environment.slug)


@csrf_exempt
def agent_outcomes(request: HttpRequest, slug: str) -> HttpResponse:
    """POST /api/v1/agents/<slug>/outcomes: how each answer went, for canary analysis."""
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "use POST.")
        response["Allow"] = "POST"
        return response
    raw_key = _bearer_token(request)
    if raw_key is None:
        return _missing_key()
    # The key is checked before the body is read: strangers cost no parsing.
    try:
        key = authenticate(raw_key) if len(raw_key) <= MAX_KEY_LENGTH else None
    except SnapshotUnavailable:
        return _database_unavailable()
    if key is None:
        return _invalid_key()
    refusal = runtime.scope_refusal(key, slug, reporting=True)
    if refusal is not None:
        return _error(403, *refusal)
    try:
        payload = load_json(request.body, max_bytes=MAX_OUTCOMES_BYTES, where="the body")
    except RequestDataTooBig:
        return _error(413, "too_large", "the body is too large; send at most 1,000 events.")
    except InputError as exc:
        if exc.too_large:
            return _error(
                413, "too_large", f"the body is {exc.message}; send at most 1,000 events."
            )
        if exc.kind == SYNTAX:
            return _error(400, "invalid_json", f"the body is {exc.message}.")
        return _error(400, "invalid_json", f"{exc}; nothing of this batch was stored.")
    try:
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            return _error(404, "agent_not_found", f"there is no agent {slug!r}.")
        events = outcomes.parse_events(payload, now=timezone.now())
        accepted, duplicates = outcomes.record_outcomes(
            agent=agent, environment_id=key.environment_id, events=events
        )
    except outcomes.VersionsNotServed as exc:
        # Well-formed, but about versions this environment does not serve this agent:
        # a runtime never got them, so they would only be someone's fabrication or a bug.
        body = {
            "error": {
                "code": "version_not_served",
                "message": "nothing of this batch was stored; these events name versions "
                f"{slug} does not serve in {key.environment_slug}. Report outcomes only for "
                "the version.id of the config answer they are about.",
                "details": [error.as_dict() for error in exc.errors],
            }
        }
        return _vary(HttpResponse(runtime.serialize(body), status=422, content_type=_JSON))
    except outcomes.InvalidBatch as exc:
        body = {
            "error": {
                "code": "invalid_events",
                "message": "nothing of this batch was stored; fix these events and resend it.",
                "details": [error.as_dict() for error in exc.errors],
            }
        }
        return _vary(HttpResponse(runtime.serialize(body), status=400, content_type=_JSON))
    except DatabaseError as exc:
        return _error(*database_error(exc, f"the outcomes of {slug}"))
    accepted_body = runtime.serialize({"accepted": accepted, "duplicates": duplicates})
    return _vary(HttpResponse(accepted_body, status=202, content_type=_JSON))


def healthz(request: HttpRequest) -> HttpResponse:
    """Whether this process can serve runtimes, for load balancers (no I/O while fresh).

    200 "ok"; 200 "degraded" while the database is unreachable but the last snapshot still
    serves (taking the node out of rotation would only turn stale answers into errors);
    503 when the process has never been able to load a snapshot.
    """
    snapshot.ensure_fresh()
    if snapshot.failing:
        loaded = snapshot.age != float("inf")
        status, body = (
            (200 if loaded else 503),
            {
                "status": "degraded" if loaded else "unavailable",
                "database": "unavailable",
                "snapshot_age_seconds": None if not loaded else round(snapshot.age, 1),
            },
        )
    else:
        status, body = 200, {"status": "ok", "database": "ok"}
    response = HttpResponse(runtime.serialize(body), status=status, content_type=_JSON)
    response["Cache-Control"] = "no-store"
    return response


_JSON = "application/json"


def _bearer_token(request: HttpRequest) -> str | None:
    return _token(request.headers.get("Authorization", ""))


def _matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _error(status: int, code: str, message: str) -> HttpResponse:
    response = HttpResponse(runtime.error_body(code, message), status=status, content_type=_JSON)
    response["Cache-Control"] = "no-store"
    return _vary(response)


_MISSING_KEY = "send the key as 'Authorization: Bearer <key>'."
_INVALID_KEY = "the API key is unknown or revoked."
_UNAVAILABLE = "the configuration store cannot be reached; retry later."
_WWW_AUTHENTICATE = ("WWW-Authenticate", 'Bearer realm="agentconfig"')


def _missing_key() -> HttpResponse:
    return _unauthorized("missing_api_key", _MISSING_KEY)


def _invalid_key() -> HttpResponse:
    return _unauthorized("invalid_api_key", _INVALID_KEY)


def _database_unavailable() -> HttpResponse:
    return _error(503, "database_unavailable", _UNAVAILABLE)


def database_error(exc: DatabaseError, doing: str) -> tuple[int, str, str]:
    """(status, code, message) for a database error while `doing` something.

    Only an unreachable database (no connection, timeout, lock wait) is a 503 that
    runtimes retry. A value the database refused is the request's fault (400); anything
    else is a bug (500). Both are logged with the traceback: input validation missed it.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable while serving %s: %s", doing, exc)
        return 503, "database_unavailable", _UNAVAILABLE
    if isinstance(exc, DataError):
        logger.error("the database refused a value of %s", doing, exc_info=exc)
        return (
            400,
            "invalid_input",
            "the database refused a value of this request (out of range or not storable "
            "text); nothing was stored. Check the values and resend.",
        )
    logger.error("database error while serving %s", doing, exc_info=exc)
    return 500, "internal_error", "the server failed on this request; it has been logged."


def _unauthorized(code: str, message: str) -> HttpResponse:
    response = _error(401, code, message)
    response[_WWW_AUTHENTICATE[0]] = _WWW_AUTHENTICATE[1]
    return response


_VARY = f"Authorization, {CONTEXT_HEADER}"


def _vary(response: HttpResponse) -> HttpResponse:
    # The answer depends on the key and on the flag context header (query parameters
    # are part of the URL, which caches key on anyway). Nothing before sets Vary.
    response["Vary"] = _VARY
    return response
