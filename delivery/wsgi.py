"""The lean WSGI path: runtime requests served without the admin's middleware.

The config endpoint — the hot path, polled by every runtime — is answered straight from
the WSGI environ by `delivery.views.answer_config`, the function the Django view calls
too, with the same security headers SecurityMiddleware would add (`_SecurityHeaders`).

Sessions, messages, CSRF and authentication middleware do nothing for bearer-key JSON, yet
they cost more than the answer itself (docs/decisions/0014-runtime-delivery.md). Requests
for the runtime routes (delivery.urls: config, outcomes, OFREP, healthz) go
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
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import split_domain_port, validate_host
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_urlconf

from delivery.views import Raw, answer_config

logger = logging.getLogger("django.request")
security_logger = logging.getLogger("django.security.DisallowedHost")

RUNTIME_URLCONF = "delivery.urls"
# Runtime paths all start with one of these; anything else skips resolving entirely.
_PREFIXES = ("/api/v1/agents/", "/ofrep/", "/healthz")
_CONFIG_PATH = re.compile(r"^/api/v1/agents/([-a-zA-Z0-9_]+)/config$")
_REASONS = {code.value: code.phrase for code in HTTPStatus}
# `at` as a query parameter of its own (not the end of "ctx.format=...").
_AT_PARAMETER = re.compile(r"(?:^|&)at=")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RuntimeFastPath:
    """WSGI application: runtime routes on the lean path, the rest to `django_app`."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app
        self.resolver = get_resolver(RUNTIME_URLCONF)
        self.security = SecurityMiddleware(self._view)
        self.headers = _SecurityHeaders()
        # SecurityMiddleware reads its settings once, like Django's own handler does;
        # tests that change them need a fresh one.
        setting_changed.connect(self._settings_changed, weak=False)

    def _settings_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting.startswith("SECURE_") or setting == "ALLOWED_HOSTS":
            self.security = SecurityMiddleware(self._view)
            self.headers = _SecurityHeaders()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(_PREFIXES) or _AT_PARAMETER.search(environ.get("QUERY_STRING", "")):
            return self.django_app(environ, start_response)
        config = _CONFIG_PATH.match(path)
        if config is not None:
            return self._config(environ, start_response, config.group(1))
        try:
            match = self.resolver.resolve(path)
        except Resolver404:
            return self.django_app(environ, start_response)
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        request.resolver_match = match
        response = self._respond(request)
        # request_finished (connection clean-up) is sent when the server closes it.
        # As Django's WSGIHandler does; the stubs do not declare this private attribute.
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    def _config(
        self, environ: dict[str, Any], start_response: Callable[..., Any], slug: str
    ) -> Iterable[bytes]:
        """GET /api/v1/agents/<slug>/config without Django's request and response objects."""
        headers = self.headers
        refusal = headers.refuse(environ)
        if refusal is not None:
            status, response_headers, body = refusal
        else:
            method = environ.get("REQUEST_METHOD", "")
            raw = _answer(environ, method, slug)
            status = f"{raw.status} {_REASONS.get(raw.status, '')}"
            response_headers = raw.headers + headers.for_response(environ)
            body = b"" if method == "HEAD" else raw.body
            response_headers.append(("Content-Length", str(len(raw.body))))
        start_response(status, response_headers)
        return [body]

    def _respond(self, request: WSGIRequest) -> HttpResponseBase:
        try:
            request.get_host()  # ALLOWED_HOSTS, exactly as Django checks it
        except DisallowedHost as exc:
            security_logger.error(str(exc), extra={"status_code": 400, "request": request})
            return _json_error(400, "invalid_host", "the Host header is not allowed here.")
        try:
            # Built around the synchronous _view, the middleware answers synchronously.
            response = cast(HttpResponseBase, self.security(request))
        except Exception:
            logger.exception("Internal Server Error: %s", request.path, extra={"request": request})
            return _json_error(500, "internal_error", "an unexpected error; it was logged.")
        return response

    def _view(self, request: HttpRequest) -> HttpResponse:
        set_urlconf(None)
        match = request.resolver_match
        assert match is not None  # noqa: S101 - set by __call__
        response: HttpResponse = match.func(request, *match.args, **match.kwargs)
        return response


def _answer(environ: dict[str, Any], method: str, slug: str) -> Raw:
    """answer_config for this environ; a query over the field limit is a 400, a bug a 500."""
    try:
        query = _Query(environ.get("QUERY_STRING", ""))
    except ValueError:
        error = _json_error(400, "invalid_query", "the query string has too many fields.")
        return Raw(400, list(error.items()), error.content)
    try:
        return answer_config(
            method,
            slug,
            query,
            environ.get("HTTP_AUTHORIZATION", ""),
            environ.get("HTTP_X_AGENTCONFIG_CONTEXT"),
            environ.get("HTTP_IF_NONE_MATCH", ""),
        )
    except Exception:
        logger.exception("Internal Server Error: %s", environ.get("PATH_INFO"))
        error = _json_error(500, "internal_error", "an unexpected error; it was logged.")
        return Raw(500, list(error.items()), error.content)


class _Query(dict[str, list[str]]):
    """The query string as QueryDict reads it (last value wins, getlist for all), without
    QueryDict's per-request setup; bounded like DATA_UPLOAD_MAX_NUMBER_FIELDS."""

    def __init__(self, query_string: str) -> None:
        super().__init__()
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        for name, value in parse_qsl(query_string, keep_blank_values=True, max_num_fields=limit):
            self.setdefault(name, []).append(value)

    def get(self, name: str, default: Any = None) -> Any:
        values = super().get(name)
        return values[-1] if values else default

    def __getitem__(self, name: str) -> Any:
        return super().__getitem__(name)[-1]

    def getlist(self, name: str) -> list[str]:
        return list(super().get(name, []))


class _SecurityHeaders:
    """What SecurityMiddleware and ALLOWED_HOSTS do, for the config endpoint's raw path:
    the same settings, read once (like the middleware), checked per request."""

    def __init__(self) -> None:
        self.allowed_hosts = settings.ALLOWED_HOSTS or (
            [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
        )
        self._host_ok: dict[str, bool] = {}
        self.redirect = settings.SECURE_SSL_REDIRECT
        self.redirect_host = settings.SECURE_SSL_HOST
        self.redirect_exempt = [re.compile(r) for r in settings.SECURE_REDIRECT_EXEMPT]
        self.proxy_header = settings.SECURE_PROXY_SSL_HEADER
        self.always: list[tuple[str, str]] = []
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            self.always.append(("X-Content-Type-Options", "nosniff"))
        if settings.SECURE_REFERRER_POLICY:
            policy = settings.SECURE_REFERRER_POLICY
            value = policy if isinstance(policy, str) else ",".join(policy)
            self.always.append(("Referrer-Policy", value))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            self.always.append(
                ("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
            )
        self.hsts: list[tuple[str, str]] = []
        if settings.SECURE_HSTS_SECONDS:
            value = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                value += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                value += "; preload"
            self.hsts.append(("Strict-Transport-Security", value))

    def _is_secure(self, environ: dict[str, Any]) -> bool:
        if self.proxy_header is not None:
            header, secure_value = self.proxy_header
            forwarded = environ.get(header)
            if forwarded is not None:
                return forwarded.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def _host(self, environ: dict[str, Any]) -> str:
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            return environ["HTTP_X_FORWARDED_HOST"]
        return environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")

    def refuse(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """A 400 for a host not in ALLOWED_HOSTS, a 301 to HTTPS where configured; or None."""
        host = self._host(environ)
        allowed = self._host_ok.get(host)
        if allowed is None:
            domain, _ = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._host_ok) < 1000:  # bounded: hosts are attacker-chosen
                self._host_ok[host] = allowed
        if not allowed:
            security_logger.error("Invalid HTTP_HOST header: %r.", host)
            error = _json_error(400, "invalid_host", "the Host header is not allowed here.")
            return "400 Bad Request", list(error.items()), error.content
        path = environ.get("PATH_INFO", "").lstrip("/")
        if (
            self.redirect
            and not self._is_secure(environ)
            and not any(pattern.search(path) for pattern in self.redirect_exempt)
        ):
            target = self.redirect_host or host
            query = environ.get("QUERY_STRING", "")
            location = f"https://{target}{environ.get('PATH_INFO', '')}" + (
                f"?{query}" if query else ""
            )
            return "301 Moved Permanently", [("Location", location), ("Content-Length", "0")], b""
        return None

    def for_response(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        if self.hsts and self._is_secure(environ):
            return self.always + self.hsts
        return list(self.always)


def _json_error(status: int, code: str, message: str) -> HttpResponse:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response
