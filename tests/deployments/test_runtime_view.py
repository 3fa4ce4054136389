"""GET /api/v1/agents/<slug>/config: statuses, caching headers, I/O budget, the change feed."""

import contextlib
import json

import pytest
from django.db import connection
from django.urls import reverse

from agentconfig.core.actors import Actor
from delivery import runtime
from delivery import views as runtime_views
from delivery.snapshot import snapshot
from deployments.services.api_keys import revoke_api_key
from deployments.services.releases import rollback
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


def test_config__warm__no_database_query_and_no_cache_call(
    client, deployed, api_key, django_assert_num_queries, cache_calls
):
    get(client, api_key)  # loads the snapshot and builds the document

    with django_assert_num_queries(0):
        response = get(client, api_key)

    assert response.status_code == 200
    assert cache_calls == []


def test_config__cold__bounded_queries(client, deployed, api_key, django_assert_max_num_queries):
    # Feed position; every active key; pointer + versions + canary in one query; the
    # agent's flags and tool gates.
    with django_assert_max_num_queries(5):
        assert get(client, api_key).status_code == 200


def test_config__after_the_refresh_interval__one_feed_query(
    client, deployed, api_key, django_assert_num_queries, settings
):
    settings.AGENTCONFIG_REFRESH_INTERVAL = 0
    get(client, api_key)

    # Nothing changed: one read of the feed, nothing rebuilt.
    with django_assert_num_queries(1):
        assert get(client, api_key).status_code == 200


def test_config__burst_after_a_change__document_built_once(
    client, deployed, api_key, production, django_assert_num_queries
):
    # Given a served document, then a rollback made by this process (it refreshes at once)
    v1, _ = deployed
    get(client, api_key)
    rollback(agent=v1.agent, environment=production, actor=Actor.system("o"), reason="r")

    # Then the first request reads the feed and rebuilds; the next ones do no I/O
    with django_assert_num_queries(4):  # feed; pointer + versions; flags; tool gates
        assert get(client, api_key).json()["version"]["number"] == 1
    with django_assert_num_queries(0):
        for _ in range(5):
            assert get(client, api_key).json()["version"]["number"] == 1


def test_config__build_races_with_a_deploy__stale_document_is_never_kept(
    client, agent, production, api_key
):
    # Given a reader that builds v1's document while a deploy of v2 commits and is applied
    factories.deploy(factories.create_version(agent), production)
    get(client, api_key, slug="another-agent")  # loads the snapshot, not this document
    key = snapshot.authenticate(api_key)

    def build_then_deploy() -> runtime.Document:
        stale = runtime.build_document(key, "support-bot")
        factories.deploy(factories.create_version(agent), production)
        snapshot.ensure_fresh()  # the deploy is applied while the build is in flight
        return stale

    served = snapshot.get(("doc", key.environment_id, "support-bot"), build_then_deploy)

    # Then the stale build served its own request but was not kept: the next one gets v2
    assert served.stable.payload["version"]["number"] == 1
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


def test_config__revoked_key__401_on_next_request_in_the_revoking_process(
    client, deployed, production
):
    key, plaintext = factories.create_api_key(production, name="runtime-eu")
    assert get(client, plaintext).status_code == 200  # known as valid

    revoke_api_key(key=key, actor=Actor.system("ops"), reason="leaked")

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
def test_config__database_down_and_nothing_known__503_never_a_default(client):
    _, production = factories.live_agent()
    key = factories.create_api_key(production)[1]

    with database_unreachable():
        response = get(client, key)

    assert response.status_code == 503
    assert error_code(response) == "database_unavailable"


@pytest.mark.django_db(transaction=True)
def test_config__database_down_and_snapshot_known__last_snapshot_with_its_age(
    client, settings, caplog
):
    settings.AGENTCONFIG_REFRESH_INTERVAL = 0  # every request tries the database
    _, production = factories.live_agent()
    key = factories.create_api_key(production)[1]
    warm = get(client, key)
    assert runtime_views.SNAPSHOT_AGE_HEADER not in warm

    with database_unreachable():
        responses = [get(client, key) for _ in range(5)]

    assert all(r.status_code == 200 and r.content == warm.content for r in responses)
    assert all(int(r[runtime_views.SNAPSHOT_AGE_HEADER]) >= 0 for r in responses)
    # One line for the outage, not one per request.
    assert len([r for r in caplog.records if "cannot read the change feed" in r.message]) == 1
    # And when the database is back the header is gone.
    assert runtime_views.SNAPSHOT_AGE_HEADER not in get(client, key)


@pytest.mark.django_db(transaction=True)
def test_config__database_down__unknown_agent_of_a_known_key__503(client):
    _, production = factories.live_agent()
    key = factories.create_api_key(production)[1]
    assert get(client, key).status_code == 200

    with database_unreachable():
        response = get(client, key, slug="never-asked-for")

    assert response.status_code == 503
    assert error_code(response) == "database_unavailable"


@pytest.mark.django_db(transaction=True)
def test_healthz__database_down_after_a_snapshot__200_degraded(client, settings):
    settings.AGENTCONFIG_REFRESH_INTERVAL = 0
    assert client.get("/healthz").json() == {"database": "ok", "status": "ok"}

    with database_unreachable():
        response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["database"] == "unavailable"
    assert body["snapshot_age_seconds"] >= 0


@pytest.mark.django_db(transaction=True)
def test_healthz__database_down_from_the_start__503(client):
    with database_unreachable():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
