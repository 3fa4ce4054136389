"""Test data built through the real services, so a test cannot construct an impossible state."""

from __future__ import annotations

import itertools
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from deployments.models import ApiKey, Environment, ReleaseLogEntry
from deployments.services import api_keys
from deployments.services import releases as deployment_services
from versions import services as version_services
from versions.models import AgentVersion

ACTOR = Actor.system("tests")
# Tests that are not about approvals set up releases with break glass.
SETUP_BREAK_GLASS = "test setup"
_counter = itertools.count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


def user_with(*permissions: str, **fields: Any) -> Any:
    """A user holding exactly these permissions ("app_label.codename")."""
    user = UserFactory(**fields)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)  # fresh, so the permission cache is empty


def config(**overrides: Any) -> dict[str, Any]:
    """A valid configuration; each call without overrides gives a different prompt."""
    base = {
        "system_prompt": f"You are a helpful support agent. (variant {next(_counter)})",
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 800,
        "tools": ["lookup_order"],
        "guardrails": {"blocked_topics": ["medical advice"]},
    }
    base.update(overrides)
    return base


def environment(slug: str) -> Environment:
    """A seeded environment; recreated if a transactional test flushed the migration's rows."""
    seeded = {"staging": 0, "production": 1}
    return Environment.objects.get_or_create(
        slug=slug,
        defaults={"name": slug.title(), "required_approvals": seeded.get(slug, 1)},
    )[0]


def create_agent(slug: str | None = None, **fields: Any) -> Agent:
    slug = slug or f"agent-{next(_counter)}"
    return version_services.create_agent(
        slug=slug, name=fields.pop("name", slug.replace("-", " ").title()), actor=ACTOR, **fields
    )


def create_version(agent: Agent, actor: Actor = ACTOR, **overrides: Any) -> AgentVersion:
    description = overrides.pop("change_description", "test change")
    source = overrides.pop("source", "cli")
    return version_services.create_version(
        agent=agent,
        actor=actor,
        config=config(**overrides),
        change_description=description,
        source=source,
    )


def deploy(
    version: AgentVersion, environment: Environment, reason: str = "test deploy"
) -> ReleaseLogEntry:
    """Release directly; tests about approvals go through deployments.services.requests instead."""
    return deployment_services.deploy_version(
        agent=version.agent,
        environment=environment,
        version=version,
        actor=ACTOR,
        reason=reason,
        break_glass=SETUP_BREAK_GLASS if environment.required_approvals else "",
    )


def create_api_key(
    environment: Environment, name: str | None = None, reason: str = "test key"
) -> tuple[ApiKey, str]:
    return api_keys.create_api_key(
        environment=environment, name=name or f"key-{next(_counter)}", actor=ACTOR, reason=reason
    )
