"""Fixtures for the admin tests: users with chosen permissions and an agent with history."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests import factories


def _client_for(*permissions: str) -> Client:
    user = factories.UserFactory(is_staff=True)
    user.save()  # the factory sets the password after its save; the session hash needs it
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_with_permissions(db) -> Callable[..., Client]:
    """Log in a new staff user holding exactly the given permissions ('app.codename')."""
    return _client_for


@pytest.fixture
def staff_client(db) -> Client:
    """A staff user without any permission."""
    return _client_for()


@pytest.fixture
def viewer_client(db) -> Client:
    """A staff user who may look at everything and change nothing."""
    return _client_for(
        "agentconfig.view_agent",
        "versions.view_agentversion",
        "deployments.view_pointer",
        "deployments.view_environment",
        "deployments.view_releaselogentry",
        "deployments.view_apikey",
    )


@pytest.fixture
def released_agent(agent, staging, production):
    """support-bot with v1..v3: production went v1 -> v2, staging runs v3."""
    v1 = factories.create_version(agent, change_description="first")
    v2 = factories.create_version(agent, change_description="second", temperature=0.5)
    v3 = factories.create_version(agent, change_description="third", model="gpt-4o")
    factories.deploy(v1, production)
    factories.deploy(v2, production)
    factories.deploy(v3, staging)
    return agent
