from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from tests import factories
from versions.models import AgentVersion, Source
from versions.selectors import get_latest_version

OPENAI_LOOKALIKE = "sk-proj-" + "abcdefghijklmnopqrstuvwxyzabcd"


def _url(agent) -> str:
    return reverse("admin:agentconfig_agent_new_version", args=[agent.pk])


def _form_data(version: AgentVersion, **overrides: Any) -> dict[str, Any]:
    """What the browser posts for a form prefilled from `version`, with some fields edited."""
    data = {
        # Browsers send textarea line breaks as CRLF.
        "system_prompt": version.system_prompt.replace("\n", "\r\n"),
        "model": version.model,
        "temperature": str(version.temperature),
        "max_tokens": str(version.max_tokens),
        "tools": "\r\n".join(version.tools),
        "guardrails": json.dumps(version.guardrails, indent=2).replace("\n", "\r\n"),
        "change_description": "Friendlier greeting.",
        "derived_from": str(version.pk),
    }
    data.update(overrides)
    return data


@pytest.fixture
def current(agent) -> AgentVersion:
    return factories.create_version(
        agent, system_prompt="Line one.\n\n  Indented line two.\n", tools=["lookup_order", "refund"]
    )


def test_new_version_form__get__prefilled_from_latest_version(admin_client, current):
    response = admin_client.get(_url(current.agent))

    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["system_prompt"] == current.system_prompt
    assert form.initial["tools"] == "lookup_order\nrefund"
    assert json.loads(form.initial["guardrails"]) == current.guardrails
    assert form.initial["derived_from"] == current.pk
    assert "Save as v2" in response.content.decode()


def test_new_version_form__edited_prompt__creates_next_version_from_browser(admin_client, current):
    # Given the previous version as it is stored
    before = {field: getattr(current, field) for field in ("system_prompt", "config_hash")}

    # When
    response = admin_client.post(
        _url(current.agent),
        _form_data(current, system_prompt="Line one.\r\n\r\n  Indented line three.\r\n"),
    )

    # Then
    assert response.status_code == 302
    assert response.url == reverse("admin:agentconfig_agent_change", args=[current.agent.pk])
    created = get_latest_version(current.agent)
    assert created.version_number == 2
    assert created.source == Source.BROWSER
    assert created.derived_from == current
    assert created.created_by_label == "admin"
    assert created.created_by.username == "admin"
    assert created.system_prompt == "Line one.\n\n  Indented line three.\n"
    assert created.tools == ["lookup_order", "refund"]
    assert created.change_description == "Friendlier greeting."
    current.refresh_from_db()
    assert {field: getattr(current, field) for field in before} == before


def test_new_version_form__tools_comma_separated__parsed_as_list(admin_client, current):
    admin_client.post(_url(current.agent), _form_data(current, tools="a_tool, b_tool,\r\nc_tool"))

    assert get_latest_version(current.agent).tools == ["a_tool", "b_tool", "c_tool"]


def test_new_version_form__agent_without_versions__creates_v1(admin_client, agent):
    response = admin_client.post(
        _url(agent),
        {
            "system_prompt": "You help.",
            "model": "gpt-4o-mini",
            "temperature": "0.3",
            "max_tokens": "500",
            "tools": "",
            "guardrails": "",
            "change_description": "First version.",
            "derived_from": "",
        },
    )

    assert response.status_code == 302
    created = get_latest_version(agent)
    assert created.version_number == 1
    assert created.guardrails == {}
    assert created.derived_from is None


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"temperature": "5"}, "temperature", "must be between 0 and 2"),
        ({"guardrails": '{"blocked_topics": ["x",]}'}, "guardrails", "is not valid JSON"),
        ({"guardrails": '{"a": 1, "a": 2}'}, "guardrails", "appears twice"),
        ({"guardrails": "[1, 2]"}, "guardrails", "must be a JSON object"),
        ({"tools": "lookup_order\r\nrefund\r\nlookup_order"}, "tools", "appears more than once"),
        (
            {"system_prompt": f"Use the key {OPENAI_LOOKALIKE} for lookups."},
            "system_prompt",
            "looks like an OpenAI API key",
        ),
        ({"change_description": "  "}, "change_description", "is required"),
        ({"model": ""}, "model", "must not be empty"),
        ({"max_tokens": "many"}, "max_tokens", "Enter a whole number"),
    ],
)
def test_new_version_form__wrong_input__error_on_field_and_nothing_created(
    admin_client, current, overrides, field, message
):
    response = admin_client.post(_url(current.agent), _form_data(current, **overrides))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert any(message in error for error in errors[field]), errors
    assert message in response.content.decode().replace("&#x27;", "'")
    assert "Created" not in response.content.decode()
    assert AgentVersion.objects.count() == 1


def test_new_version_form__unchanged_config__non_field_error_and_nothing_created(
    admin_client, current
):
    response = admin_client.post(_url(current.agent), _form_data(current))

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == ["no changes compared to v1."]
    assert "no changes compared to v1." in response.content.decode()
    assert AgentVersion.objects.count() == 1


def test_new_version_form__credential_in_prompt__key_not_repeated_in_message(admin_client, current):
    response = admin_client.post(
        _url(current.agent), _form_data(current, system_prompt=f"key: {OPENAI_LOOKALIKE}")
    )

    (message,) = response.context["form"].errors["system_prompt"]
    assert OPENAI_LOOKALIKE not in message


def test_new_version_form__staff_without_permission__403_and_nothing_created(staff_client, current):
    get = staff_client.get(_url(current.agent))
    post = staff_client.post(_url(current.agent), _form_data(current, temperature="0.9"))

    assert get.status_code == 403
    assert post.status_code == 403
    assert AgentVersion.objects.count() == 1


def test_new_version_form__viewer_without_add_permission__403_names_permission(
    viewer_client, current
):
    response = viewer_client.post(_url(current.agent), _form_data(current, temperature="0.9"))

    assert response.status_code == 403
    assert "versions.add_agentversion" in response.content.decode()
    assert AgentVersion.objects.count() == 1


def test_new_version_form__derived_from_other_agent__refused(admin_client, current):
    other = factories.create_version(factories.create_agent(slug="other-bot"))

    response = admin_client.post(
        _url(current.agent), _form_data(current, temperature="0.9", derived_from=str(other.pk))
    )

    assert response.status_code == 200
    assert response.context["form"].errors
    assert current.agent.versions.count() == 1


def test_new_version_form__newer_version_created_meanwhile__saved_with_warning(
    admin_client, current
):
    # Given someone else creates v2 after the form was opened from v1
    factories.create_version(current.agent)

    # When
    response = admin_client.post(
        _url(current.agent), _form_data(current, temperature="0.9"), follow=True
    )

    # Then
    created = get_latest_version(current.agent)
    assert created.version_number == 3
    assert created.derived_from == current
    assert "v2 was created while you were editing" in response.content.decode()


def test_new_version_form__unknown_agent__404(admin_client, db):
    assert (
        admin_client.get(reverse("admin:agentconfig_agent_new_version", args=[999])).status_code
        == 404
    )
