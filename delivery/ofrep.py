"""OpenFeature Remote Evaluation Protocol (OFREP 0.3.0) endpoints.

    POST /ofrep/v1/evaluate/flags/{key}   one flag   (server-side providers)
    POST /ofrep/v1/evaluate/flags         every flag (client-side providers), ETag / 304

Bodies, reasons, error codes and status codes follow the protocol's OpenAPI document
(docs/decisions/0009-flag-evaluation-and-ofrep.md maps our evaluation onto it).

Invariants:
- Authentication is an environment API key, as `Authorization: Bearer <key>` or
  `X-API-Key: <key>` (the protocol's two security schemes); the key's environment
  decides which state of each flag is served. Missing, unknown or revoked: 401.
- Every flag of the environment is served, global and agent-scoped alike: keys are
  unique across agents, so a key names one flag. An API key limited to agents sees only
  the global flags and its agents' (bulk evaluation leaves the others out); a key that
  cannot read configs, or asks for a flag or `agent.<slug>` outside its scope, gets 403.
- Bad input is answered with the protocol's JSON error bodies (400/404), never a 500;
  the database being unreachable is the only 500, with a generalErrorResponse body. The
  body is read by agentconfig.core.safe_parse: size and depth are checked before parsing.
- A warm request does no I/O: the key entry and the environment's flag snapshot come
  from this process's snapshot (delivery.snapshot), which the change feed keeps
  current; the config endpoint reads the same snapshot, so both always agree.
- The bulk ETag is the hash of the body, so it changes exactly when the answer changes
  (flags or context); If-None-Match is honoured only after the key is authenticated.
- No sessions and no cookies: the views are CSRF-exempt (bearer auth, nothing changes).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from agentconfig.core.safe_parse import SYNTAX, InputError, load_json
from delivery import runtime
from delivery.snapshot import SnapshotUnavailable, get_document, snapshot
from delivery.views import MAX_KEY_LENGTH, SNAPSHOT_AGE_HEADER
from deployments.services.api_keys import key_id_of
from flags import evaluation
from flags.evaluation import FlagSnapshot, Resolution
from flags.selectors import build_environment_snapshot

# `agent.<slug>` is reserved for agent configurations served as object flags.
AGENT_FLAG_PREFIX = "agent."
_JSON = "application/json"
# A context is a few attributes of one user; this is many times more.
MAX_BODY_BYTES = 64 * 1024

# OFREP 0.3.0's success reasons are STATIC, TARGETING_MATCH, SPLIT, DISABLED and UNKNOWN.
# OpenFeature's DEFAULT (rules exist, none matched) is not among them; STATIC would tell
# caching providers that the value does not depend on the context, which is false, so
# it is sent as UNKNOWN (the config endpoint and the admin say DEFAULT).
_WIRE_REASONS = {evaluation.DEFAULT: "UNKNOWN"}


class _BadRequest(Exception):
    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@csrf_exempt
def evaluate_flag(request: HttpRequest, key: str) -> HttpResponse:
    """POST /ofrep/v1/evaluate/flags/{key}: one flag for the context in the body."""
    started = _start(request, key)
    if isinstance(started, HttpResponse):
        return started
    authenticated, targeting_key, context = started
    if key.startswith(AGENT_FLAG_PREFIX):
        return _agent_config(authenticated, key, targeting_key, context)
    flags = _snapshot(authenticated.environment_id)
    if isinstance(flags, HttpResponse):
        return flags
    owner = flags.flag_agents.get(key)
    if owner is not None and authenticated.agent_ids and owner not in authenticated.agent_ids:
        return _forbidden(
            f"Flag {key!r} belongs to an agent this API key is not limited to; use a key of "
            "that agent's runtimes."
        )
    flag = flags.flags.get(key)
    if flag is None:
        return _json(
            404,
            {
                "key": key,
                "errorCode": "FLAG_NOT_FOUND",
                "errorDetails": f"Flag {key!r} was not found in this environment.",
            },
        )
    resolution = evaluation.evaluate(flag, targeting_key, context)
    if resolution.is_error:
        return _json(400, _failure(resolution))
    return _json(200, _success(resolution))


@csrf_exempt
def evaluate_flags(request: HttpRequest) -> HttpResponse:
    """POST /ofrep/v1/evaluate/flags: every flag of the environment, with an ETag."""
    started = _start(request, None)
    if isinstance(started, HttpResponse):
        return started
    authenticated, targeting_key, context = started
    flags = _snapshot(authenticated.environment_id)
    if isinstance(flags, HttpResponse):
        return flags
    flags = flags.visible_to(authenticated.agent_ids)
    resolutions = evaluation.evaluate_all(flags, targeting_key, context)
    body = runtime.serialize(
        {
            "flags": [
                _failure(r) if r.is_error else _success(r) for _, r in sorted(resolutions.items())
            ]
        }
    )
    etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type=_JSON)
    response["ETag"] = etag
    # Clients revalidate every time; the 304 makes that cheap.
    response["Cache-Control"] = "private, no-cache"
    return _vary(response)


# --- request handling -------------------------------------------------------------------


def _agent_config(
    entry: runtime.KeyEntry, key: str, targeting_key: str | None, context: dict[str, Any]
) -> HttpResponse:
    """`agent.<slug>`: the agent's resolved config as an object flag.

    The value is exactly the body the config endpoint serves this user (canary routing,
    flags and gated tools included), so a runtime in any language with an OpenFeature
    SDK can read its configuration without a custom client.
    """
    slug = key.removeprefix(AGENT_FLAG_PREFIX)
    refusal = runtime.scope_refusal(entry, slug, reporting=False)
    if refusal is not None:
        return _forbidden(f"{refusal[1][:1].upper()}{refusal[1][1:]}")
    try:
        document = get_document(entry, slug)
    except DatabaseError:
        return _unavailable()
    if document.status != 200:
        return _json(
            404,
            {
                "key": key,
                "errorCode": "FLAG_NOT_FOUND",
                "errorDetails": f"Agent {slug!r} is unknown or not deployed in this environment.",
            },
        )
    answer = document.answer(targeting_key, context)
    version = answer.payload["version"]
    # A canary deals users by hash (SPLIT); otherwise flags may still depend on the context.
    reason = "SPLIT" if document.canary is not None else "TARGETING_MATCH"
    body = {
        "key": key,
        "value": answer.payload,
        "reason": reason,
        "variant": f"{answer.track}:v{version['number']}",
        "metadata": {"configHash": version["config_hash"], "track": answer.track},
    }
    return _json(200, body)


def _start(
    request: HttpRequest, key: str | None
) -> tuple[runtime.KeyEntry, str | None, dict[str, Any]] | HttpResponse:
    """The request's API key and its body's targeting key and context; or the response
    refusing the method, the key or the body (naming the flag `key`, if one was asked for)."""
    refusal = _refuse_method(request)
    if refusal is not None:
        return refusal
    authenticated = _authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    try:
        targeting_key, context = _read_context(request)
    except _BadRequest as exc:
        named = {"key": key} if key is not None else {}
        return _json(400, {**named, "errorCode": exc.code, "errorDetails": exc.details})
    return authenticated, targeting_key, context


def _refuse_method(request: HttpRequest) -> HttpResponse | None:
    if request.method == "POST":
        return None
    response = _json(405, {"errorDetails": 'Use POST with a JSON body {"context": {…}}.'})
    response["Allow"] = "POST"
    return response


def _authenticate(request: HttpRequest) -> runtime.KeyEntry | HttpResponse:
    """The presented key's entry, or the 401/500 response (no I/O while the snapshot is
    fresh, none at all for a malformed key)."""
    raw_key = _presented_key(request)
    if raw_key is None:
        return _unauthorized(
            "Send an environment API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
        )
    if len(raw_key) > MAX_KEY_LENGTH or key_id_of(raw_key) is None:
        return _unauthorized("The API key is unknown or revoked.")
    try:
        snapshot.ensure_fresh()
        entry = snapshot.authenticate(raw_key)
    except SnapshotUnavailable:
        return _unavailable()
    if entry is None:
        return _unauthorized("The API key is unknown or revoked.")
    if not entry.can_read:
        # Every OFREP request reads configuration (flags, agent configs).
        return _forbidden(
            "This API key may report outcomes but not read flags or configurations; use a "
            "key that can read (created without --report-only)."
        )
    return entry


def _presented_key(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None


def _read_context(request: HttpRequest) -> tuple[str | None, dict[str, Any]]:
    """The targeting key and the other context attributes of the request body."""
    try:
        body = load_json(request.body, max_bytes=MAX_BODY_BYTES, where="the request body")
    except RequestDataTooBig:
        raise _BadRequest("PARSE_ERROR", "The request body is too large.") from None
    except InputError as exc:
        # OFREP has no 413: too large is a PARSE_ERROR like the protocol's other refusals.
        if exc.too_large:
            raise _BadRequest(
                "PARSE_ERROR", f"The request body is too large: {exc.message}."
            ) from None
        if exc.kind == SYNTAX:
            raise _BadRequest("PARSE_ERROR", f"The request body is {exc.message}.") from None
        details = str(exc)
        raise _BadRequest("PARSE_ERROR", f"{details[:1].upper()}{details[1:]}.") from None
    if not isinstance(body, dict):
        raise _BadRequest(
            "PARSE_ERROR", 'The request body must be a JSON object: {"context": {…}}.'
        )
    context = body.get("context")
    if not isinstance(context, dict):
        raise _BadRequest(
            "INVALID_CONTEXT",
            'The request body needs a "context" object, e.g. {"context": {"targetingKey": '
            '"user-123", "country": "DE"}}.',
        )
    targeting_key = context.get(evaluation.TARGETING_KEY_ATTRIBUTE)
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise _BadRequest("INVALID_CONTEXT", "context.targetingKey must be a string.")
    attributes = {k: v for k, v in context.items() if k != evaluation.TARGETING_KEY_ATTRIBUTE}
    return targeting_key or None, attributes


def _snapshot(environment_id: int) -> FlagSnapshot | HttpResponse:
    """Every flag of the environment (what OFREP serves), from this process's snapshot."""
    try:
        return snapshot.get(
            ("ofrep", environment_id), lambda: build_environment_snapshot(environment_id)
        )
    except DatabaseError:
        return _unavailable()


# --- response bodies ----------------------------------------------------------------------


def _success(resolution: Resolution) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": resolution.key,
        "value": resolution.value,
        "reason": _WIRE_REASONS.get(resolution.reason, resolution.reason),
        "variant": resolution.variant,
    }
    if resolution.rule_number is not None:
        # Flag metadata (string/number/boolean values): which rule served the value.
        body["metadata"] = {"rule": resolution.rule_number}
    return body


def _failure(resolution: Resolution) -> dict[str, Any]:
    return {
        "key": resolution.key,
        "errorCode": resolution.error_code or evaluation.GENERAL,
        "errorDetails": resolution.error_details or "The flag could not be evaluated.",
    }


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    response = HttpResponse(runtime.serialize(body), status=status, content_type=_JSON)
    response["Cache-Control"] = "no-store"
    return _vary(response)


def _unauthorized(details: str) -> HttpResponse:
    response = _json(401, {"errorDetails": details})
    response["WWW-Authenticate"] = 'Bearer realm="agentconfig"'
    return response


def _forbidden(details: str) -> HttpResponse:
    # OFREP 0.3.0 lists 403 ("the client does not have permission to access the requested
    # resource") for both endpoints, without a body schema; the generalErrorResponse
    # shape ({"errorDetails"}) is what its 401 and 500 answers carry, so clients read it.
    return _json(403, {"errorDetails": details})


def _unavailable() -> HttpResponse:
    return _json(
        500, {"errorDetails": "The flag store cannot be reached; retry later (nothing is known)."}
    )


def _etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _vary(response: HttpResponse) -> HttpResponse:
    response["Vary"] = "Authorization, X-API-Key"
    if snapshot.failing:
        response[SNAPSHOT_AGE_HEADER] = str(int(snapshot.age))
    return response
