"""People in role groups, signed in: the users the admin tests act as (tests only)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.test import Client

from agentconfig.core.roles import ROLES
from tests import factories


def ensure_roles() -> None:
    """The role groups as the migration makes them, if a transactional test flushed them."""
    for role, names in ROLES.items():
        group, created = Group.objects.get_or_create(name=role)
        if created:
            group.permissions.set(
                Permission.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in (name.split(".") for name in names)
            )


def member(username: str, *groups: str, permissions: tuple[str, ...] = ()) -> Any:
    """A staff user in the role groups the migration creates, with optional extra permissions."""
    ensure_roles()
    user = factories.UserFactory(username=username, is_staff=True)
    user.save()  # the factory sets the password after its save; the session hash needs it
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)  # fresh, so the permission cache is empty


def login(user: Any) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client
