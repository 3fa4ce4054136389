"""Links to versions from other apps' admin pages, and list queries that skip prompt text."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from versions.models import AgentVersion

# Version rows carry whole prompts; lists of pointers and log entries need only their numbers.
VERSION_TEXT_COLUMNS = ("system_prompt", "guardrails")


def version_link(version: AgentVersion | None) -> SafeString | str:
    """The version's label, linked to its admin page ("—" for none)."""
    if version is None:
        return "—"
    url = reverse("admin:versions_agentversion_change", args=[version.pk])
    return format_html('<a href="{}">{}</a>', url, version.label)


def without_version_text(queryset: QuerySet[Any], *relations: str) -> QuerySet[Any]:
    """`queryset` joined to the versions at `relations`, without their prompt text."""
    return queryset.select_related(*relations).defer(
        *(f"{relation}__{column}" for relation in relations for column in VERSION_TEXT_COLUMNS)
    )
