"""The admin sign-in's lockout page and client address, for django-axes (settings AXES_*).

Invariants:
- Every refused sign-in of a locked-out (username, address) pair writes one WARNING on the
  `agentconfig.security` logger, naming the pair and how to unlock it; the first is the
  failure that caused the lockout.
- The page says what happened and what to do, never whether the username exists.
- The client address is REMOTE_ADDR unless AGENTCONFIG_TRUSTED_PROXY_COUNT proxies append
  to X-Forwarded-For; entries a client could have written itself are never used.
"""

from __future__ import annotations

import logging
from typing import Any

from axes.conf import settings as axes_settings
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

logger = logging.getLogger("agentconfig.security")


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The 429 lockout page, logged."""
    username = get_client_username(request, credentials) or ""
    limit = get_failure_limit(request, credentials)
    cool_off = get_cool_off(request)
    minutes = round(cool_off.total_seconds() / 60) if cool_off else None
    logger.warning(
        "Sign-in locked out: username=%r address=%s after %s failed attempts (limit %d); "
        "cool-off %s min from the last attempt. Unlock: manage.py axes_reset_username %s",
        username,
        getattr(request, "axes_ip_address", None),
        getattr(request, "axes_failures_since_start", "?"),
        limit,
        minutes if minutes is not None else "none (until reset)",
        username or "<username>",
    )
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed sign-ins",
        "failure_limit": limit,
        "cool_off_minutes": minutes,
    }
    response = TemplateResponse(
        request,
        "admin/agentconfig/lockout.html",
        context,
        status=axes_settings.AXES_HTTP_RESPONSE_CODE,
    )
    return response.render()


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as the last trusted proxy saw it, else REMOTE_ADDR."""
    remote: str | None = request.META.get("REMOTE_ADDR")
    proxies: int = settings.AGENTCONFIG_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    # Each trusted proxy appends the address it received from; the left part is the client's.
    forwarded: str = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < proxies:
        return remote
    return hops[-proxies]
