"""The runtime endpoint and the health check: plain function views, no sessions.

The endpoint authenticates with `Authorization: Bearer <key>`, never with cookies,
so it is exempt from CSRF (it changes nothing either way).
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from deployments import runtime

ALLOWED_METHODS = ("GET", "HEAD")


@csrf_exempt
def agent_config(request: HttpRequest, slug: str) -> HttpResponse:
    """GET /api/v1/agents/<slug>/config: the active config for the key's environment."""
    if request.method not in ALLOWED_METHODS:
        response = _error(405, "method_not_allowed", f"use {' or '.join(ALLOWED_METHODS)}.")
        response["Allow"] = ", ".join(ALLOWED_METHODS)
        return response
    raw_key = _bearer_token(request)
    if raw_key is None:
        return _unauthorized("missing_api_key", "send the key as 'Authorization: Bearer <key>'.")
    try:
        key, generation = runtime.lookup(raw_key, slug)
        if key is None:
            return _unauthorized("invalid_api_key", "the API key is unknown or revoked.")
        document = runtime.get_document(key, slug, generation)
    except DatabaseError:
        return _error(
            503, "database_unavailable", "the configuration store cannot be reached; retry later."
        )
    if document.status != 200:
        return _vary(HttpResponse(document.body, status=document.status, content_type=_JSON))
    if _matches(request.headers.get("If-None-Match", ""), document.etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(document.body, content_type=_JSON)
    response["ETag"] = document.etag
    response["Cache-Control"] = f"private, max-age={settings.AGENTCONFIG_RUNTIME_MAX_AGE}"
    return _vary(response)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness of the process and reachability of the database, for load balancers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database, status = "ok", 200
    except DatabaseError:
        database, status = "unavailable", 503
    body = runtime.serialize(
        {"status": "ok" if status == 200 else "degraded", "database": database}
    )
    response = HttpResponse(body, status=status, content_type=_JSON)
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


def _unauthorized(code: str, message: str) -> HttpResponse:
    response = _error(401, code, message)
    response["WWW-Authenticate"] = 'Bearer realm="agentconfig"'
    return response


def _vary(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, ("Authorization",))
    return response
