"""Test data built through the real services, so a test cannot construct an impossible state."""

from __future__ import annotations

import itertools
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from agentconfig.core.actors import Actor
from agentconfig.core.roles import ADMIN_APPS, ADMIN_EXTRA, ROLES
from agentconfig.models import Agent
from deployments.models import ApiKey, DeploymentRequest, Environment, ReleaseLogEntry
from deployments.services import api_keys, requests
from deployments.services import releases as deployment_services
from versions import services as version_services
from versions.models import AgentVersion

ACTOR = Actor.system("tests")
# Tests that are not about approvals set up releases with break glass.
SETUP_BREAK_GLASS = "test setup"
_counter = itertools.count(1)

# The canary policy form as a person fills it in: every field valid.
CANARY_POLICY_FORM = {
    "default_steps": "1,5,25,50",
    "bake_minutes": "30",
    "margin": "1.25",
    "max_error_increase": "0.0025",
    "promote_confidence": "0.95",
    "rollback_ratio": "1.25",
    "rollback_confidence": "0.99",
    "min_regression": "0.5",
    "power": "0.8",
    "max_latency_ratio": "1.25",
    "latency_quantile": "0.95",
    "max_score_drop": "",
    "srm_tolerance": "0.2",
    "max_duration_minutes": "1440",
    "deadline_action": "rollback",
    "reason": "tuned after the incident review",
}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


def ensure_roles() -> None:
    """The role groups as the migration makes them, if a transactional test flushed them."""
    for role, names in ROLES.items():
        group, created = Group.objects.get_or_create(name=role)
        if created:
            group.permissions.set(_permission(name) for name in names)
    admins, created = Group.objects.get_or_create(name="Admins")
    if created:
        admins.permissions.set(
            [
                *Permission.objects.filter(content_type__app_label__in=ADMIN_APPS),
                *(_permission(name) for name in ADMIN_EXTRA),
            ]
        )


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def user_with(*permissions: str, groups: tuple[str, ...] = (), **fields: Any) -> Any:
    """A user holding exactly these permissions ("app_label.codename") and role groups."""
    if groups:
        ensure_roles()
    user = UserFactory(**fields)
    user.save()  # the factory sets the password after its save; the session hash needs it
    user.groups.add(*(Group.objects.get(name=group) for group in groups))
    user.user_permissions.add(*(_permission(name) for name in permissions))
    return type(user).objects.get(pk=user.pk)  # fresh, so the permission cache is empty


def member(username: str, *groups: str, permissions: tuple[str, ...] = ()) -> Any:
    """A staff user in the role groups the migration creates, with optional extra permissions."""
    return user_with(*permissions, groups=groups, username=username, is_staff=True)


def login(user: Any) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client


class People:
    """The role users of a test, each made the first time it is asked for: people["reviewer"]."""

    CAST: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
        # role: (username, groups, extra permissions)
        "editor": ("editor", ("Editors",), ()),
        "editor2": ("editor2", ("Editors",), ()),
        "reviewer": ("reviewer", ("Reviewers",), ()),
        "reviewer2": ("reviewer2", ("Reviewers",), ()),
        "deployer": ("deployer", ("Deployers",), ()),
        "deployer2": ("deployer2", ("Deployers",), ()),
        # Asks for deployments and reviews other people's: not their own.
        "editor_reviewer": ("editor-reviewer", ("Editors", "Reviewers"), ()),
        "all_in_one": ("all-in-one", ("Editors", "Reviewers", "Deployers"), ()),
        "firefighter": ("firefighter", ("Deployers",), ("deployments.break_glass",)),
        "admin": ("ana", ("Admins",), ()),
        "admin2": ("bea", ("Admins",), ()),
        "admin3": ("cem", ("Admins",), ()),
    }

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def __getitem__(self, role: str) -> Any:
        if role not in self._made:
            username, groups, permissions = self.CAST[role]
            self._made[role] = member(username, *groups, permissions=permissions)
        return self._made[role]


def client_for(*permissions: str) -> Client:
    """A signed-in staff user holding exactly the given permissions ('app.codename')."""
    return login(user_with(*permissions, is_staff=True))


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
        break_glass=SETUP_BREAK_GLASS if environment.requires_approval else "",
    )


def deploy_by_request(
    version: AgentVersion,
    environment: Environment,
    *,
    requested_by: Actor,
    reviewed_by: Actor,
    reason: str = "test request",
    comment: str = "ok",
    applied_by: Actor = ACTOR,
) -> DeploymentRequest:
    """Release the way a guarded environment takes it: asked for, approved, applied."""
    request = requests.create_request(
        agent=version.agent,
        environment=environment,
        version=version,
        actor=requested_by,
        reason=reason,
    )
    requests.approve_request(request=request, actor=reviewed_by, comment=comment)
    requests.apply_request(request=request, actor=applied_by)
    return request


def create_api_key(
    environment: Environment, name: str | None = None, reason: str = "test key"
) -> tuple[ApiKey, str]:
    return api_keys.create_api_key(
        environment=environment, name=name or f"key-{next(_counter)}", actor=ACTOR, reason=reason
    )


def live_agent(slug: str = "support-bot") -> tuple[Agent, Environment]:
    """`slug` with its v1 live in production: the agent and production.

    For tests without the agent/production fixtures (transactional ones, live servers)."""
    production = environment("production")
    agent = create_agent(slug=slug)
    deploy(create_version(agent), production)
    return agent, production
