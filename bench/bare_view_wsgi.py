"""The deployed WSGI application plus a bare Django view, for bench/runtime_delivery.py only.

Served as `bench.bare_view_wsgi:application` (granian or gunicorn). It adds two things to
the project as deployed, and changes nothing else:

- `GET /bench/bare`: a plain Django function view that returns, as a `JsonResponse`, the
  body the config endpoint returned for a stable user of `small-agent` (the bench fetches
  it over HTTP and names the file in BENCH_BARE_BODY_FILE). Its URL is not a runtime path,
  so it goes through the full MIDDLEWARE stack and URL resolver: it is what "a trivial
  Django view" costs on the same server processes that serve the endpoint.
- A response header `X-Bench-Worker: <pid>` on every response, so the propagation poller
  can tell which worker answered (the app never reveals its pid). A few microseconds, on
  every scenario alike.

Invariants:
- The endpoint is served by `agentconfig.wsgi.application`, whatever that is (today or
  after the lean runtime path lands): this module wraps it and never builds its own
  handler, so the endpoint is measured as deployed.
- The URLconf is the project's, with one path in front; the settings module is whichever
  DJANGO_SETTINGS_MODULE names (production by default, as in agentconfig.wsgi).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

from agentconfig.wsgi import application as deployed_application

WORKER_HEADER = "X-Bench-Worker"
BODY_FILE_VARIABLE = "BENCH_BARE_BODY_FILE"


@cache
def _body() -> dict[str, Any] | None:
    # Read once per process, on the first request: the bench writes the file after the
    # server is up (it needs the endpoint's answer) and before the first /bench/bare.
    name = os.environ.get(BODY_FILE_VARIABLE, "")
    if not name or not os.path.exists(name):
        return None
    with open(name, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def bare(request: HttpRequest) -> JsonResponse:
    """The baseline: a function view that serialises a ready dict, no query, no cache."""
    body = _body()
    if body is None:
        return JsonResponse(
            {"error": f"{BODY_FILE_VARIABLE} names no file; the bench writes it first."},
            status=503,
        )
    return JsonResponse(body)


def _project_urls() -> list[Any]:
    # Imported here, not at the top: the project's URLs import models, so Django must be
    # set up first (importing agentconfig.wsgi above does that).
    from agentconfig.urls import urlpatterns

    return [path("bench/bare", bare, name="bench-bare"), *urlpatterns]


urlpatterns = _project_urls()
# Read by Django's handler on every request; the lean runtime path (if any) resolves its
# own URLconf and never sees /bench/bare.
settings.ROOT_URLCONF = __name__


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append((WORKER_HEADER, str(os.getpid())))
        return start_response(status, headers, exc_info)

    return deployed_application(environ, start)
