"""Environments and what is active in each."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.http import HttpRequest
from ninja import Router

from agentconfig.api.auth import actor_of
from agentconfig.api.problems import responses
from agentconfig.api.schemas import EnvironmentOut
from deployments.models import Environment, Pointer

router = Router(tags=["environments"])


@router.get(
    "/environments",
    response=responses(200, list[EnvironmentOut]),
    summary="List environments and what is active where",
)
def list_environments(request: HttpRequest) -> list[dict[str, Any]]:
    actor = actor_of(request)
    actor.require("deployments.view_environment", "view environments")
    actor.require("deployments.view_pointer", "view what is deployed")
    pointers: dict[int, list[Pointer]] = defaultdict(list)
    for pointer in Pointer.objects.select_related(
        "agent", "stable_version", "canary__canary_version"
    ).order_by("agent__slug"):
        pointers[pointer.environment_id].append(pointer)
    return [
        {
            "slug": environment.slug,
            "name": environment.name,
            "required_approvals": environment.required_approvals,
            "active": pointers[environment.pk],
        }
        for environment in Environment.objects.all()
    ]
