"""A service's refusal in the flag admin is shown on the page, never a 500, and nothing is written.

The list's "delete selected" action refuses as the object's delete page does: a change that
needs an approved request (ApprovalRequired, a Forbidden) is the admin's 403 page in the
service's words.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from flags.models import Flag, ToolGate
from flags.services import flags as flag_services
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import ACTOR, make_flag, turn_on

DELETE_FLAGS = ("flags.view_flag", "flags.delete_flag")
DELETE_GATES = ("flags.view_toolgate", "flags.delete_toolgate")


def delete_selected(client, changelist: str, *pks: int):
    return client.post(
        reverse(changelist),
        {"action": "delete_selected", "_selected_action": [str(pk) for pk in pks], "post": "yes"},
        follow=True,
    )


@pytest.fixture
def flag_on_in_production(production, staging):
    flag = make_flag("web-search")
    turn_on(flag, production)
    return flag


def test_delete_selected_flags__one_on_in_production__refusal_page_nothing_deleted(
    client_with_permissions, flag_on_in_production
):
    # Given one flag off everywhere and one on in production (which requires approval)
    unused = make_flag("unused")
    client = client_with_permissions(*DELETE_FLAGS)

    # When both are deleted from the list at once
    response = delete_selected(
        client, "admin:flags_flag_changelist", unused.pk, flag_on_in_production.pk
    )

    # Then the refusal is shown and neither is deleted (not even the one deleted first)
    assert response.status_code == 403
    content = response.content.decode()
    assert "production requires 1 approval" in content
    assert "Successfully deleted" not in content
    assert set(Flag.objects.values_list("key", flat=True)) == {"unused", "web-search"}


def test_delete_selected_tool_gates__approval_environment__refusal_page_nothing_deleted(
    client_with_permissions, flag_on_in_production, agent
):
    gate = flag_services.create_tool_gate(
        agent=agent,
        tool_name="web_search",
        flag=flag_on_in_production,
        actor=ACTOR,
        break_glass=SETUP_BREAK_GLASS,
    )
    client = client_with_permissions(*DELETE_GATES)

    response = delete_selected(client, "admin:flags_toolgate_changelist", gate.pk)

    assert response.status_code == 403
    assert "production requires 1 approval" in response.content.decode()
    assert ToolGate.objects.filter(pk=gate.pk).exists()
