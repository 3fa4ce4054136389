"""Agents and versions over HTTP, with a token of each role."""

from __future__ import annotations

import json

import pytest

from agentconfig.api.pagination import encode_cursor
from agentconfig.core.errors import Conflict
from tests import factories
from tests.api.conftest import ROLES, assert_problem
from versions import services
from versions.config import CONFIG_FIELDS

READERS = ("editor", "reviewer", "deployer", "admin", "viewer")
VERSION_WRITERS = ("editor", "admin")


@pytest.mark.parametrize("role", ROLES)
def test_list_agents__every_role_with_view_permission(api, token_for, agent, role):
    response = api.get("/agents", token_for(role))

    if role in READERS:
        assert response.status_code == 200
        assert [item["slug"] for item in response.json()["items"]] == ["support-bot"]
    else:
        body = assert_problem(response, 403, "forbidden")
        assert "agentconfig.view_agent" in body["detail"]


def test_list_agents__cursor_pages_in_slug_order(api, token_for, db):
    for slug in ("delta", "alpha", "echo", "charlie", "bravo"):
        factories.create_agent(slug=slug)
    token = token_for("viewer")

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/agents", token, **query).json()
        seen += [item["slug"] for item in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        if cursor is None:
            break

    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert pages == 3


def test_list_agents__latest_version_number(api, token_for, versions):
    item = api.get("/agents", token_for("viewer")).json()["items"][0]

    assert item["latest_version"] == 3
    assert item["name"] == "Support Bot"


@pytest.mark.parametrize(
    "cursor", ["not-base64!", encode_cursor(5), encode_cursor(None), "eyJ4IjogMX0"]
)
def test_list_agents__cursor_not_given_by_the_api__400(api, token_for, agent, cursor):
    response = api.get("/agents", token_for("viewer"), cursor=cursor)

    body = assert_problem(response, 400, "invalid")
    assert "cursor" in body["detail"]


@pytest.mark.parametrize("limit", ["0", "201", "many"])
def test_list_agents__bad_limit__422_with_field(api, token_for, agent, limit):
    response = api.get("/agents", token_for("viewer"), limit=limit)

    body = assert_problem(response, 422, "invalid")
    assert list(body["errors"]) == ["limit"]


def test_get_agent(api, token_for, versions):
    response = api.get("/agents/support-bot", token_for("reviewer"))

    assert response.status_code == 200
    assert response.json()["latest_version"] == 3


def test_get_agent__unknown__404_problem(api, token_for, db):
    body = assert_problem(api.get("/agents/ghost", token_for("viewer")), 404, "not_found")

    assert body["detail"] == "there is no agent 'ghost'."


@pytest.mark.parametrize("role", ROLES)
def test_list_versions__newest_first(api, token_for, versions, role):
    response = api.get("/agents/support-bot/versions", token_for(role))

    if role in READERS:
        assert response.status_code == 200
        items = response.json()["items"]
        assert [item["number"] for item in items] == [3, 2, 1]
        assert items[0]["derived_from"] == 2
        assert "config" not in items[0]
    else:
        assert_problem(response, 403, "forbidden")


def test_list_versions__pages_by_cursor(api, token_for, versions, agent):
    factories.create_version(agent)
    token = token_for("viewer")

    first = api.get("/agents/support-bot/versions", token, limit=3).json()
    second = api.get(
        "/agents/support-bot/versions", token, limit=3, cursor=first["next_cursor"]
    ).json()

    assert [v["number"] for v in first["items"]] == [4, 3, 2]
    assert [v["number"] for v in second["items"]] == [1]
    assert second["next_cursor"] is None


def test_get_version__the_whole_configuration(api, token_for, versions):
    response = api.get("/agents/support-bot/versions/2", token_for("deployer"))

    assert response.status_code == 200
    body = response.json()
    assert body["number"] == 2
    assert body["config"]["system_prompt"] == versions[1].system_prompt
    assert tuple(body["config"]) == CONFIG_FIELDS


def test_get_version__unknown__404_naming_the_known_ones(api, token_for, versions):
    body = assert_problem(
        api.get("/agents/support-bot/versions/9", token_for("viewer")), 404, "not_found"
    )

    assert "v1-v3" in body["detail"]


def test_get_version__number_not_a_number__422(api, token_for, versions):
    body = assert_problem(
        api.get("/agents/support-bot/versions/three", token_for("viewer")), 422, "invalid"
    )

    assert "number" in body["errors"]


def _new_version(**config_overrides):
    return {
        "config": factories.config(**config_overrides),
        "change_description": "Shorter answers",
    }


@pytest.mark.parametrize("role", ROLES)
def test_create_version__by_role(api, token_for, role_user, versions, agent, role):
    response = api.post("/agents/support-bot/versions", token_for(role), _new_version())

    if role in VERSION_WRITERS:
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["number"] == 4
        assert body["source"] == "api"
        assert body["created_by"] == role_user(role).username
        assert body["derived_from"] == 3
        assert agent.versions.get(version_number=4).created_by == role_user(role)
    else:
        body = assert_problem(response, 403, "forbidden")
        assert "versions.add_agentversion" in body["detail"]
        assert agent.versions.count() == 3


def test_create_version__no_changes__422_naming_the_version(api, token_for, versions, agent):
    latest = versions[-1]
    same = {field: getattr(latest, field) for field in CONFIG_FIELDS}

    response = api.post(
        "/agents/support-bot/versions",
        token_for("editor"),
        {"config": same, "change_description": "again"},
    )

    body = assert_problem(response, 422, "invalid")
    assert body["detail"] == "no changes compared to v3."
    assert agent.versions.count() == 3


def test_create_version__invalid_config__422_with_the_services_field_errors(
    api, token_for, versions, agent
):
    response = api.post(
        "/agents/support-bot/versions",
        token_for("editor"),
        {
            "config": {**factories.config(temperature=7), "modle": "x"},
            "change_description": "",
        },
    )

    body = assert_problem(response, 422, "invalid")
    assert {"temperature", "modle"} <= set(body["errors"])
    assert "Did you mean 'model'?" in " ".join(body["errors"]["modle"])
    assert agent.versions.count() == 3


def test_create_version__credential_in_prompt__422_and_nothing_written(
    api, token_for, versions, agent
):
    prompt = "Use the key sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 3 + " to call the API."

    response = api.post(
        "/agents/support-bot/versions", token_for("editor"), _new_version(system_prompt=prompt)
    )

    body = assert_problem(response, 422, "invalid")
    assert "system_prompt" in body["errors"]
    assert agent.versions.count() == 3


def test_create_version__missing_description__422(api, token_for, versions):
    response = api.post(
        "/agents/support-bot/versions",
        token_for("editor"),
        {"config": factories.config(), "change_description": "   "},
    )

    body = assert_problem(response, 422, "invalid")
    assert "change_description" in body["errors"]


def test_create_version__unknown_agent__404(api, token_for, db):
    assert_problem(
        api.post("/agents/ghost/versions", token_for("editor"), _new_version()), 404, "not_found"
    )


@pytest.mark.parametrize(
    "raw",
    ['{"config": ', "not json at all", "\xff\xfe", "[1, 2"],
)
def test_create_version__malformed_json__400_not_500(api, token_for, versions, raw):
    response = api.post("/agents/support-bot/versions", token_for("editor"), raw=raw)

    assert_problem(response, 400, "bad_request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": "a string", "change_description": "x"}, "config"),
        ({"config": [1, 2], "change_description": "x"}, "config"),
        ({"change_description": "x"}, "config"),
        ({"config": {}, "change_description": 5}, "change_description"),
        ([], "config"),
        (None, "config"),
    ],
)
def test_create_version__wrong_types__422_with_field(api, token_for, versions, body, field):
    response = api.post("/agents/support-bot/versions", token_for("editor"), body)

    problem = assert_problem(response, 422, "invalid")
    assert field in problem["errors"], problem


def test_create_version__empty_body__422(api, token_for, versions):
    response = api.post("/agents/support-bot/versions", token_for("editor"), raw="")

    assert_problem(response, 422, "invalid")


def test_create_version__config_fields_of_wrong_type__422_from_the_service(
    api, token_for, versions
):
    response = api.post(
        "/agents/support-bot/versions",
        token_for("editor"),
        _new_version(max_tokens="lots", tools="all"),
    )

    body = assert_problem(response, 422, "invalid")
    assert {"max_tokens", "tools"} <= set(body["errors"])
    json.dumps(body)  # plain JSON all the way down


def test_create_version__lost_race__409_problem(api, token_for, versions, monkeypatch):
    # The service's Conflict (another version got the number first) is a 409, not a 500.
    def lose(**kwargs):
        raise Conflict("another version of support-bot was created at the same moment; try again.")

    monkeypatch.setattr(services, "create_version", lose)

    response = api.post("/agents/support-bot/versions", token_for("editor"), _new_version())

    body = assert_problem(response, 409, "conflict")
    assert "try again" in body["detail"]
