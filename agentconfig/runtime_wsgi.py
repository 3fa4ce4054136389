"""The lean WSGI path: runtime requests served without the admin's middleware.

Sessions, messages, CSRF and authentication middleware do nothing for bearer-key JSON, yet
they cost more than the answer itself (docs/decisions/0014-runtime-delivery.md). Requests
for the runtime routes (agentconfig.runtime_urls: config, outcomes, OFREP, healthz) go
through Django's request and response objects, the same views, and only what matters for
them; every other path goes to Django's handler unchanged.

Invariants:
- The views are the same on both paths (one URLconf), so the lean path can only skip
  middleware, never change an answer.
- What still applies: ALLOWED_HOSTS (400 for another host), SecurityMiddleware (HTTPS
  redirect, HSTS, nosniff, referrer and opener policies, as configured), the request size
  limits (DATA_UPLOAD_MAX_MEMORY_SIZE, read by request.body), and Django's request
  signals, which keep database connections healthy (close_old_connections).
- `?at=` (time travel for signed-in auditors) needs the session, so it takes the full path.
- An unexpected exception is logged and answered as a JSON 500, never a debug page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_urlconf

logger = logging.getLogger("django.request")
security_logger = logging.getLogger("django.security.DisallowedHost")

RUNTIME_URLCONF = "agentconfig.runtime_urls"
# Runtime paths all start with one of these; anything else skips resolving entirely.
_PREFIXES = ("/api/v1/agents/", "/ofrep/", "/healthz")
# `at` as a query parameter of its own (not the end of "ctx.format=...").
_AT_PARAMETER = re.compile(r"(?:^|&)at=")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RuntimeFastPath:
    """WSGI application: runtime routes on the lean path, the rest to `django_app`."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app
        self.resolver = get_resolver(RUNTIME_URLCONF)
        self.security = SecurityMiddleware(self._view)
        # SecurityMiddleware reads its settings once, like Django's own handler does;
        # tests that change them need a fresh one.
        setting_changed.connect(self._settings_changed, weak=False)

    def _settings_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting.startswith("SECURE_"):
            self.security = SecurityMiddleware(self._view)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(_PREFIXES) or _AT_PARAMETER.search(environ.get("QUERY_STRING", "")):
            return self.django_app(environ, start_response)
        try:
            match = self.resolver.resolve(path)
        except Resolver404:
            return self.django_app(environ, start_response)
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        request.resolver_match = match
        response = self._respond(request)
        # request_finished (connection clean-up) is sent when the server closes it.
        response._handler_class = self.__class__
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    def _respond(self, request: WSGIRequest) -> HttpResponse:
        try:
            request.get_host()  # ALLOWED_HOSTS, exactly as Django checks it
        except DisallowedHost as exc:
            security_logger.error(str(exc), extra={"status_code": 400, "request": request})
            return _json_error(400, "invalid_host", "the Host header is not allowed here.")
        try:
            response = self.security(request)
        except Exception:
            logger.exception("Internal Server Error: %s", request.path, extra={"request": request})
            return _json_error(500, "internal_error", "an unexpected error; it was logged.")
        return response  # type: ignore[no-any-return]

    def _view(self, request: WSGIRequest) -> HttpResponse:
        set_urlconf(None)
        match = request.resolver_match
        return match.func(request, *match.args, **match.kwargs)  # type: ignore[no-any-return]


def _json_error(status: int, code: str, message: str) -> HttpResponse:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response
