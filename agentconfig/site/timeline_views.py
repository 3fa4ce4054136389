"""The audit timeline page of one agent, and its "What was live?" question.

    /admin/agentconfig/agent/<id>/timeline/?environment=<slug>

Everything that changed what the agent's runtimes receive or the rules that govern its
releases (agentconfig.site.timeline.list_audit_events), newest first, grouped by day, filterable
by environment; each entry says who, when, what (before and after) and why, and links to
its diff or to the page of what changed. Break glass, automatic rollbacks, rejections,
kill switches, revoked keys and gate overrides are marked with a label and an icon, not
by colour alone.

"What was live?" answers "what did user U get in production at 14:02 on 3 September?"
with the same code as `GET /api/v1/agents/<slug>/config?user_id=U&at=<ISO>&environment=`
(delivery.history), and links that endpoint.

Invariants:
- Read-only: GET pages that write nothing.
- The page needs the view permission on agents and on the release log
  (deployments.view_releaselogentry, which the endpoint's `at=` also requires).
- The number of queries does not grow with the number of events.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import get_agent_for_page, page_context, read_only_page
from agentconfig.models import Agent
from agentconfig.site.timeline import AuditEvent, list_audit_events
from delivery.history import build_document_at
from delivery.runtime import KeyEntry
from deployments.models import Environment

HISTORY_PERMISSION = "deployments.view_releaselogentry"
KIND_LABELS = {
    "version": "Version",
    "request": "Request",
    "review": "Review",
    "release": "Release",
    "flag": "Flag",
    "gate": "Tool gate",
    "settings": "Environment",
    "policy": "Policy",
    "api-key": "API key",
    "roles": "Roles",
    "override": "Evaluation gate",
}

LINK_TEXTS = {
    "version": "version",
    "request": "request",
    "review": "request",
    "release": "version",
    "flag": "flag",
    "gate": "tool gate",
    "settings": "environment",
    "policy": "policy",
    "api-key": "key",
    "roles": "person",
    "override": "override",
}


@dataclass(frozen=True)
class TimelineEntry:
    """An audit event for display, with the words that mark a prominent one."""

    event: AuditEvent

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.event.kind, self.event.kind)

    @property
    def alert(self) -> str:
        """Why the entry stands out ("Break glass", "Kill switch", …), or ""."""
        return self.event.alert

    @property
    def link_text(self) -> str:
        """What the entry's link opens: a diff, or the page of what changed."""
        link = self.event.link or ""
        if "/compare/" in link:
            return "diff"
        return LINK_TEXTS.get(self.event.kind, "details")

    @property
    def title(self) -> str:
        # The label says "Break glass" already; the title keeps the what.
        return self.event.title.removeprefix("BREAK GLASS — ")


class WhatWasLiveForm(forms.Form):
    """Environment, user id and moment (UTC) of the question "what was live?"."""

    # Choices from the environments the page has loaded already (no query of its own).
    environment = forms.ChoiceField(choices=())
    user_id = forms.CharField(
        required=False,
        max_length=200,
        label="User id",
        help_text="As the runtime sends it; empty: the stable answer.",
    )
    at = forms.DateTimeField(
        label="At (UTC)",
        input_formats=[
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M:%S.%f",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ],
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"
        ),
    )

    def __init__(self, *args: Any, environments: list[Environment], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environments = {environment.slug: environment for environment in environments}
        field = self.fields["environment"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - as declared
        field.choices = [(e.slug, e.name) for e in environments]

    def clean_environment(self) -> Environment:
        return self.environments[self.cleaned_data["environment"]]

    def clean_at(self) -> dt.datetime:
        # The form reads the wall-clock time in UTC (the admin shows times in UTC too).
        at = self.cleaned_data["at"]
        at = at.replace(tzinfo=dt.UTC) if timezone.is_naive(at) else at.astimezone(dt.UTC)
        if at > timezone.now():
            raise forms.ValidationError("is in the future; pick a moment that has passed.")
        return at


@dataclass(frozen=True)
class LiveAnswer:
    """What the endpoint answered then, or why it could not (error)."""

    api_url: str
    environment: str
    user_id: str
    at: dt.datetime
    payload: dict[str, Any] | None = None
    error: str = ""

    @property
    def prompt(self) -> str:
        return str(self.payload["config"].get("system_prompt", "")) if self.payload else ""

    @property
    def json(self) -> str:
        return json.dumps(self.payload, indent=2, sort_keys=True, ensure_ascii=False)


def what_was_live(agent: Agent, form: WhatWasLiveForm) -> LiveAnswer:
    """The endpoint's answer for the form's question, computed as the endpoint does."""
    environment: Environment = form.cleaned_data["environment"]
    user_id: str = form.cleaned_data["user_id"].strip()
    at: dt.datetime = form.cleaned_data["at"]
    query = {"at": at.isoformat().replace("+00:00", "Z"), "environment": environment.slug}
    if user_id:
        query["user_id"] = user_id
    api_url = f"{reverse('runtime-config', args=[agent.slug])}?{urlencode(query)}"
    document = build_document_at(KeyEntry(environment.pk, environment.slug), agent.slug, at)
    if document.status != 200:
        message = json.loads(document.body).get("error", {}).get("message", "no answer")
        return LiveAnswer(api_url, environment.slug, user_id, at, error=message)
    payload = document.answer(user_id or None, {}).payload
    return LiveAnswer(api_url, environment.slug, user_id, at, payload=payload)


@read_only_page
def timeline_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """The agent's audit timeline, newest first, and the "What was live?" form."""
    agent = get_agent_for_page(model_admin, request, object_id)
    Actor.of(request.user).require(HISTORY_PERMISSION, "read the audit timeline")
    environments = list(Environment.objects.all())
    slug = request.GET.get("environment") or None
    if slug is not None and slug not in {e.slug for e in environments}:
        known = ", ".join(e.slug for e in environments) or "none"
        raise Http404(f"There is no environment {slug!r} (known: {known}).")
    events = list_audit_events(agent, environment=slug)
    live_form = WhatWasLiveForm(
        request.GET if "live-at" in request.GET else None,
        environments=environments,
        prefix="live",
        initial={"environment": slug or (environments[-1].slug if environments else None)},
    )
    live = what_was_live(agent, live_form) if live_form.is_bound and live_form.is_valid() else None
    context = page_context(
        request,
        model_admin,
        f"Timeline of {agent.slug}",
        agent=agent,
        environments=environments,
        environment_slug=slug,
        entries=[TimelineEntry(event) for event in events],
        live_form=live_form,
        live=live,
        timeline_url=reverse("admin:agentconfig_agent_timeline", args=[agent.pk]),
    )
    return TemplateResponse(request, "admin/agentconfig/agent/timeline.html", context)
