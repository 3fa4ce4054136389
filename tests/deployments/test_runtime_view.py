"""GET /api/v1/agents/<slug>/config: statuses, caching headers, query budget, invalidation."""

import contextlib
import json

import pytest
from django.db import connection
from django.urls import reverse

from agentconfig.actors import Actor
from agentconfig.caching import cache_add
from deployments import runtime
from deployments.services import revoke_api_key, rollback
from tests import factories


def url(slug: str = "support-bot") -> str:
    return reverse("runtime-config", args=[slug])


def get(client, key: str | None, slug: str = "support-bot", **headers):
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.get(url(slug), **headers)


def error_code(response) -> str:
    return json.loads(response.content)["error"]["code"]


@pytest.fixture
def deployed(agent, production, django_capture_on_commit_callbacks):
    """support-bot v1 and v2, v2 active in production."""
    with django_capture_on_commit_callbacks(execute=True):
        v1 = factories.create_version(agent, system_prompt="You answer billing questions.")
        v2 = factories.create_version(agent, system_prompt="You answer questions.")
        factories.deploy(v1, production)
        factories.deploy(v2, production)
    return v1, v2


def test_config__deployed__full_document_for_key_environment(client, deployed, api_key):
    _, v2 = deployed

    response = get(client, api_key)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "agent": "support-bot",
        "environment": "production",
        "track": "stable",
        "version": {
            "number": 2,
            "id": str(v2.id),
            "config_hash": v2.config_hash,
            "created_at": v2.created_at.isoformat(),
        },
        "config": v2.config,
        "flags": {},
    }


def test_config__caching_headers__etag_vary_private_max_age(client, deployed, api_key):
    response = get(client, api_key)

    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    assert "Authorization" in response["Vary"]
    assert response["Cache-Control"] == "private, max-age=1"


def test_config__if_none_match_current_etag__304_without_body(client, deployed, api_key):
    etag = get(client, api_key)["ETag"]

    response = get(client, api_key, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_config__if_none_match_stale_etag__200_with_new_body(client, deployed, api_key):
    response = get(client, api_key, HTTP_IF_NONE_MATCH='"not-the-current-etag"')

    assert response.status_code == 200


def test_config__if_none_match_with_bad_key__401_not_304(client, deployed, api_key):
    etag = get(client, api_key)["ETag"]

    response = get(client, "acfg_000000000000_" + "x" * 43, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 401


def test_config__etag__changes_exactly_when_body_changes(
    client, deployed, api_key, production, django_capture_on_commit_callbacks
):
    v1, _ = deployed
    first = get(client, api_key)
    again = get(client, api_key)
    with django_capture_on_commit_callbacks(execute=True):
        rollback(agent=v1.agent, environment=production, actor=Actor.system("o"), reason="r")
    after = get(client, api_key)

    assert first["ETag"] == again["ETag"] and first.content == again.content
    assert after["ETag"] != first["ETag"] and after.content != first.content


def test_config__rollback__endpoint_serves_old_config_on_next_request(
    client, deployed, api_key, production, django_capture_on_commit_callbacks
):
    # Given v2 (without the billing paragraph) is served, and cached
    v1, _ = deployed
    assert "billing" not in get(client, api_key).json()["config"]["system_prompt"]

    # When an operator rolls back
    with django_capture_on_commit_callbacks(execute=True):
        rollback(agent=v1.agent, environment=production, actor=Actor.system("o"), reason="bad")

    # Then the very next request gets v1's config
    body = get(client, api_key).json()
    assert body["version"]["number"] == 1
    assert body["config"]["system_prompt"] == "You answer billing questions."


def test_config__warm_cache__no_database_query(
    client, deployed, api_key, django_assert_num_queries
):
    get(client, api_key)  # warms the key entry and the document

    with django_assert_num_queries(0):
        response = get(client, api_key)

    assert response.status_code == 200


def test_config__cold_cache__bounded_queries(
    client, deployed, api_key, django_assert_max_num_queries
):
    # The key; pointer + versions + canary in one query; the agent's flags and tool gates.
    with django_assert_max_num_queries(4):
        assert get(client, api_key).status_code == 200


def test_config__reader_races_with_deploy__stale_document_is_never_served(
    client, agent, production, api_key, django_capture_on_commit_callbacks
):
    # Given a reader that read the generation and built the document before a deploy...
    with django_capture_on_commit_callbacks(execute=True):
        v1 = factories.create_version(agent)
        factories.deploy(v1, production)
    key, generation = runtime.lookup(api_key, "support-bot")
    stale = runtime.build_document(key, "support-bot")

    # ...and a deploy that commits before the reader writes its document to the cache
    with django_capture_on_commit_callbacks(execute=True):
        factories.deploy(factories.create_version(agent), production)
    cache_add(runtime._document_key(key.environment_id, "support-bot", generation), stale, 60)

    # Then the next request still sees the new version
    assert get(client, api_key).json()["version"]["number"] == 2


# --- errors -------------------------------------------------------------------------------


def test_config__no_authorization_header__401_missing_key(client, deployed):
    response = get(client, None)

    assert response.status_code == 401
    assert error_code(response) == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"],
)
def test_config__wrong_authorization_scheme__401(client, deployed, header):
    response = client.get(url(), HTTP_AUTHORIZATION=header)

    assert response.status_code == 401


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "acfg_000000000000_" + "y" * 43],
)
def test_config__unknown_key__401_invalid(client, deployed, key):
    response = get(client, key)

    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_config__right_key_id_wrong_secret__401(client, deployed, api_key):
    tampered = api_key[:-4] + ("aaaa" if not api_key.endswith("aaaa") else "bbbb")

    assert get(client, tampered).status_code == 401


def test_config__revoked_key__401_on_next_request_even_when_cached(
    client, deployed, production, django_capture_on_commit_callbacks
):
    key, plaintext = factories.create_api_key(production, name="runtime-eu")
    assert get(client, plaintext).status_code == 200  # cached as valid

    with django_capture_on_commit_callbacks(execute=True):
        revoke_api_key(key=key, actor=Actor.system("ops"))

    response = get(client, plaintext)
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_config__unknown_agent__404(client, deployed, api_key):
    response = get(client, api_key, slug="no-such-bot")

    assert response.status_code == 404
    assert error_code(response) == "agent_not_found"


def test_config__agent_not_deployed_in_key_environment__404(client, deployed, staging):
    staging_key = factories.create_api_key(staging)[1]

    response = get(client, staging_key)

    assert response.status_code == 404
    assert error_code(response) == "not_deployed"
    assert "staging" in json.loads(response.content)["error"]["message"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_config__other_methods__405_json_with_allow(client, deployed, api_key, method):
    response = getattr(client, method)(url(), HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


@contextlib.contextmanager
def database_unreachable():
    """Point the connection somewhere that cannot answer, for real, then restore it."""
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = "/nonexistent-folder/agentconfig.sqlite3"
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=1)
    try:
        yield
    finally:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_config__database_down_and_cold_cache__503_never_a_default(client):
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    factories.deploy(factories.create_version(agent), production)
    key = factories.create_api_key(production)[1]

    with database_unreachable():
        response = get(client, key)

    assert response.status_code == 503
    assert error_code(response) == "database_unavailable"


@pytest.mark.django_db(transaction=True)
def test_config__database_down_and_warm_cache__still_200(client):
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    factories.deploy(factories.create_version(agent), production)
    key = factories.create_api_key(production)[1]
    warm = get(client, key)

    with database_unreachable():
        response = get(client, key)

    assert response.status_code == 200 and response.content == warm.content


@pytest.mark.django_db(transaction=True)
def test_healthz__database_down__503(client):
    assert client.get("/healthz").json() == {"database": "ok", "status": "ok"}

    with database_unreachable():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "unavailable", "status": "degraded"}
