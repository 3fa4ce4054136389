"""The runtime API (config and outcomes) and the health check: plain function views.

Runtimes authenticate with `Authorization: Bearer <key>` and never with cookies, so
these views are exempt from CSRF: a forged cross-site request carries no credential.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from agentconfig.models import Agent
from deployments import history, outcomes, runtime
from deployments.models import Environment
from deployments.snapshot import SnapshotUnavailable, get_document, snapshot
from flags.context import CONTEXT_HEADER, ContextError, parse_context

ALLOWED_METHODS = ("GET", "HEAD")
HISTORY_PERMISSION = "deployments.view_releaselogentry"
# Longer than any key we issue (acfg_ + 12 + _ + at most 100): refused without hashing.
MAX_KEY_LENGTH = 200
MAX_USER_ID = 256
# Sent when the snapshot could not be refreshed recently (database unreachable): how many
# seconds old the answer may be.
SNAPSHOT_AGE_HEADER = "Agentconfig-Snapshot-Age"


@csrf_exempt
def agent_config(request: HttpRequest, slug: str) -> HttpResponse:
    """GET /api/v1/agents/<slug>/config: the active config for the key's environment."""
    if request.method not in ALLOWED_METHODS:
        response = _error(405, "method_not_allowed", f"use {' or '.join(ALLOWED_METHODS)}.")
        response["Allow"] = ", ".join(ALLOWED_METHODS)
        return response
    if "at" in request.GET:
        return _config_at(request, slug)
    # Everything about the request itself is checked before any I/O.
    raw_key = _bearer_token(request)
    if raw_key is None:
        return _missing_key()
    if len(raw_key) > MAX_KEY_LENGTH or runtime.key_id_of(raw_key) is None:
        return _invalid_key()
    user_id = request.GET.get("user_id") or None
    if user_id is not None and len(user_id) > MAX_USER_ID:
        return _error(
            400,
            "invalid_user_id",
            f"user_id is {len(user_id):,} characters long; the maximum is {MAX_USER_ID}.",
        )
    try:
        context = parse_context(request.GET, request.headers.get(CONTEXT_HEADER))
    except ContextError as exc:
        return _error(400, "invalid_context", exc.message)
    try:
        key = authenticate(raw_key)
        if key is None:
            return _invalid_key()
        document = get_document(key, slug)
    except (DatabaseError, SnapshotUnavailable):
        return _database_unavailable()
    return _answer(request, document, user_id, context)


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
    if at > timezone.now():
        return _error(400, "invalid_at", "at is in the future; leave it out for the present.")
    try:
        key = _history_reader(request)
        if isinstance(key, HttpResponse):
            return key
        document = history.build_document_at(key, slug, at)
    except DatabaseError:
        return _database_unavailable()
    try:
        context = parse_context(request.GET, request.headers.get(CONTEXT_HEADER))
    except ContextError as exc:
        return _error(400, "invalid_context", exc.message)
    return _answer(request, document, request.GET.get("user_id") or None, context)


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
    environment = Environment.objects.filter(slug=request.GET.get("environment", "")).first()
    if environment is None:
        return _error(400, "invalid_environment", "name the environment: ?environment=<slug>.")
    return runtime.KeyEntry(environment.pk, environment.slug)


def _answer(
    request: HttpRequest,
    document: runtime.Document,
    user_id: str | None,
    context: dict[str, Any],
) -> HttpResponse:
    if document.status != 200:
        response = HttpResponse(document.body, status=document.status, content_type=_JSON)
        return _vary(_with_age(response))
    answer = document.answer(user_id, context)
    if _matches(request.headers.get("If-None-Match", ""), answer.etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(answer.body, content_type=_JSON)
    response["ETag"] = answer.etag
    response["Cache-Control"] = f"private, max-age={settings.AGENTCONFIG_RUNTIME_MAX_AGE}"
    return _vary(_with_age(response))


def _with_age(response: HttpResponse) -> HttpResponse:
    if snapshot.failing:
        response[SNAPSHOT_AGE_HEADER] = str(int(snapshot.age))
    return response


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
    try:
        payload = json.loads(request.body)
    except RequestDataTooBig:
        return _error(413, "too_large", "the body is too large; send at most 1,000 events.")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return _error(400, "invalid_json", f"the body is not valid JSON: {exc}.")
    try:
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            return _error(404, "agent_not_found", f"there is no agent {slug!r}.")
        events = outcomes.parse_events(payload, now=timezone.now())
        accepted, duplicates = outcomes.record_outcomes(
            agent=agent, environment_id=key.environment_id, events=events
        )
    except outcomes.InvalidBatch as exc:
        body = {
            "error": {
                "code": "invalid_events",
                "message": "nothing of this batch was stored; fix these events and resend it.",
                "details": [error.as_dict() for error in exc.errors],
            }
        }
        return _vary(HttpResponse(runtime.serialize(body), status=400, content_type=_JSON))
    except DatabaseError:
        return _database_unavailable()
    body = runtime.serialize({"accepted": accepted, "duplicates": duplicates})
    return _vary(HttpResponse(body, status=202, content_type=_JSON))


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
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _error(status: int, code: str, message: str) -> HttpResponse:
    response = HttpResponse(runtime.error_body(code, message), status=status, content_type=_JSON)
    response["Cache-Control"] = "no-store"
    return _vary(response)


def _missing_key() -> HttpResponse:
    return _unauthorized("missing_api_key", "send the key as 'Authorization: Bearer <key>'.")


def _invalid_key() -> HttpResponse:
    return _unauthorized("invalid_api_key", "the API key is unknown or revoked.")


def _database_unavailable() -> HttpResponse:
    return _error(
        503, "database_unavailable", "the configuration store cannot be reached; retry later."
    )


def _unauthorized(code: str, message: str) -> HttpResponse:
    response = _error(401, code, message)
    response["WWW-Authenticate"] = 'Bearer realm="agentconfig"'
    return response


_VARY = f"Authorization, {CONTEXT_HEADER}"


def _vary(response: HttpResponse) -> HttpResponse:
    # The answer depends on the key and on the flag context header (query parameters
    # are part of the URL, which caches key on anyway). Nothing before sets Vary.
    response["Vary"] = _VARY
    return response
