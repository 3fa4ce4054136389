"""People for the governance tests: administrators as the migration makes them (tests only)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

from agentconfig.core.roles import ADMIN_APPS
from tests import factories


def admin_user(username: str) -> Any:
    """A staff user in the Admins group (recreated if a transactional test flushed it)."""
    group, created = Group.objects.get_or_create(name="Admins")
    if created:
        group.permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    user = factories.UserFactory(username=username, is_staff=True)
    user.save()  # the factory sets the password after its save; the session hash needs it
    user.groups.add(group)
    return type(user).objects.get(pk=user.pk)  # fresh, so the permission cache is empty
