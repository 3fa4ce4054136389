"""The project's WSGI application plus one response header naming the gunicorn worker.

Used only by bench/runtime_endpoint.py, so that the deploy-visibility poller can tell
which worker process answered each request (the app itself never reveals its pid).
The wrapper adds one header to each response and nothing else; its cost is a few
microseconds against a request of about a millisecond, and it applies to every
scenario alike, so the ratios between scenarios are unaffected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from agentconfig.wsgi import application as django_application

WORKER_HEADER = "X-Bench-Worker"


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append((WORKER_HEADER, str(os.getpid())))
        return start_response(status, headers, exc_info)

    return django_application(environ, start)
