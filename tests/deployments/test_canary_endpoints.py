"""Canary routing on the config endpoint, and POST /api/v1/agents/<slug>/outcomes."""

import json

import pytest
from django.urls import reverse

from deployments.models import OutcomeCount, OutcomeEventId, Track
from tests import factories
from tests.deployments.canary_helpers import start


@pytest.fixture
def canary_running(agent, production, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        v1, v2 = factories.create_version(agent), factories.create_version(agent)
        factories.deploy(v1, production)
        rollout = start(v2, production, percent="30")
    return v1, v2, rollout


def config(client, key, user_id=None, **headers):
    url = reverse("runtime-config", args=["support-bot"])
    query = {"user_id": user_id} if user_id is not None else {}
    return client.get(url, query, HTTP_AUTHORIZATION=f"Bearer {key}", **headers)


def post_outcomes(client, key, payload, slug="support-bot"):
    return client.post(
        reverse("runtime-outcomes", args=[slug]),
        data=json.dumps(payload) if not isinstance(payload, str) else payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def test_config__canary_running__routed_users_get_canary_track(client, canary_running, api_key):
    _, v2, _ = canary_running
    tracks = {}
    for i in range(200):
        body = config(client, api_key, f"user-{i}").json()
        tracks[f"user-{i}"] = body["track"]
        if body["track"] == "canary":
            assert body["version"]["id"] == str(v2.id)

    share = sum(t == "canary" for t in tracks.values()) / len(tracks)
    assert 0.15 < share < 0.45
    # Sticky: asking again gives every user the same answer.
    assert all(
        config(client, api_key, u).json()["track"] == t for u, t in list(tracks.items())[:40]
    )


def test_config__no_user_id__stable(client, canary_running, api_key):
    v1, _, _ = canary_running

    body = config(client, api_key).json()

    assert body["track"] == "stable" and body["version"]["id"] == str(v1.id)


def test_config__canary__etag_per_track_and_304(client, canary_running, api_key):
    users = [f"user-{i}" for i in range(100)]
    canary_user = next(u for u in users if config(client, api_key, u).json()["track"] == "canary")
    stable_user = next(u for u in users if config(client, api_key, u).json()["track"] == "stable")
    canary_etag = config(client, api_key, canary_user)["ETag"]

    assert canary_etag != config(client, api_key, stable_user)["ETag"]
    assert config(client, api_key, canary_user, HTTP_IF_NONE_MATCH=canary_etag).status_code == 304
    assert config(client, api_key, stable_user, HTTP_IF_NONE_MATCH=canary_etag).status_code == 200


def test_config__canary_warm_cache__no_query(
    client, canary_running, api_key, django_assert_num_queries
):
    config(client, api_key, "user-1")

    with django_assert_num_queries(0):
        config(client, api_key, "user-2")


def test_config__two_agents__canary_membership_independent(
    production, api_key, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for slug in ("bot-a", "bot-b"):
            agent = factories.create_agent(slug=slug)
            v1, v2 = factories.create_version(agent), factories.create_version(agent)
            factories.deploy(v1, production)
            start(v2, production, percent="20")
    users = [f"user-{i}" for i in range(400)]

    def canary_set(slug):
        url = reverse("runtime-config", args=[slug])
        return {
            u
            for u in users
            if client.get(url, {"user_id": u}, HTTP_AUTHORIZATION=f"Bearer {api_key}").json()[
                "track"
            ]
            == "canary"
        }

    a, b = canary_set("bot-a"), canary_set("bot-b")
    assert a != b and len(a & b) < len(a) / 2


# --- outcomes ---------------------------------------------------------------------------------


def events(version, count=3, ok=True, prefix="e"):
    return {
        "events": [
            {
                "event_id": f"{prefix}-{i}",
                "version_id": str(version.id),
                "user_id": f"u{i}",
                "ok": ok,
            }
            for i in range(count)
        ]
    }


def test_outcomes__valid_batch__202_and_counts_per_track(client, canary_running, api_key):
    v1, v2, _ = canary_running

    stable = post_outcomes(client, api_key, events(v1, 3, prefix="s"))
    canary = post_outcomes(client, api_key, events(v2, 2, ok=False, prefix="c"))

    assert stable.status_code == 202 and stable.json() == {"accepted": 3, "duplicates": 0}
    assert canary.json() == {"accepted": 2, "duplicates": 0}
    counts = {row.track: (row.n, row.errors) for row in OutcomeCount.objects.all()}
    assert counts == {Track.STABLE: (3, 0), Track.CANARY: (2, 2)}


def test_outcomes__retried_batch__counted_once(client, canary_running, api_key):
    v1, _, _ = canary_running
    post_outcomes(client, api_key, events(v1, 5))

    again = post_outcomes(client, api_key, events(v1, 5))

    assert again.json() == {"accepted": 0, "duplicates": 5}
    assert OutcomeCount.objects.get().n == 5


def test_outcomes__duplicate_ids_inside_one_batch__counted_once(client, canary_running, api_key):
    v1, _, _ = canary_running
    payload = events(v1, 2)
    payload["events"].append(dict(payload["events"][0]))

    assert post_outcomes(client, api_key, payload).json() == {"accepted": 2, "duplicates": 1}


def test_outcomes__bad_events__400_names_index_and_field_and_stores_nothing(
    client, canary_running, api_key
):
    v1, _, _ = canary_running
    payload = events(v1, 4)
    payload["events"][1]["ok"] = "yes"
    payload["events"][3]["latency_ms"] = -5
    del payload["events"][3]["user_id"]

    response = post_outcomes(client, api_key, payload)

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert {(d["index"], d["field"]) for d in details} == {
        (1, "ok"),
        (3, "latency_ms"),
        (3, "user_id"),
    }
    assert not OutcomeCount.objects.exists() and not OutcomeEventId.objects.exists()


def test_outcomes__version_of_another_agent__400_and_nothing_stored(
    client, canary_running, api_key
):
    other = factories.create_version(factories.create_agent())
    payload = events(canary_running[0], 2)
    payload["events"].append(events(other, 1, prefix="x")["events"][0])

    response = post_outcomes(client, api_key, payload)

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["index"] == 2
    assert not OutcomeCount.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": []}, "events"),
        ({"items": []}, "events"),
        ({"events": [{}] * 1001}, "events"),
        ([1, 2], "events"),
    ],
)
def test_outcomes__malformed_body__400(client, canary_running, api_key, payload, field):
    response = post_outcomes(client, api_key, payload)

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == field


def test_outcomes__not_json__400(client, canary_running, api_key):
    response = post_outcomes(client, api_key, "{not json")

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_outcomes__auth_and_method_and_agent_errors(client, canary_running, api_key):
    url = reverse("runtime-outcomes", args=["support-bot"])

    assert client.post(url, "{}", content_type="application/json").status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code == 405
    assert post_outcomes(client, api_key, {"events": []}, slug="ghost").status_code == 404


def test_outcomes__timestamp_in_future_or_too_old__400(client, canary_running, api_key):
    payload = events(canary_running[0], 2)
    payload["events"][0]["timestamp"] = "2999-01-01T00:00:00Z"
    payload["events"][1]["timestamp"] = 1.0

    details = post_outcomes(client, api_key, payload).json()["error"]["details"]

    assert [(d["index"], d["field"]) for d in details] == [(0, "timestamp"), (1, "timestamp")]
