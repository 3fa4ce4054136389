"""The runtime path does not depend on Redis, nor on Django's cache at all.

The cache is configured as production configures a Redis CACHE_URL
(agentconfig.core.redis_cache with 0.5 s socket timeouts) pointing at a port that refuses
connections, or at a "blackhole"
that accepts connections and never answers; the configured cache of this run (locmem or
Redis) is the control. Whatever the cache, runtime requests answer correctly and fast,
changes are served at once, and not a single cache call is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from unittest import mock

import pytest
import redis
from django.core.cache import caches
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.settings.base import cache_from_env
from delivery.snapshot import snapshot
from deployments.services.api_keys import key_id_of, revoke_api_key
from tests import factories
from tests.conftest import spying_on_cache
from tests.flags.helpers import make_flag, set_rules, turn_on

REAL_REDIS = "redis://127.0.0.1:6379/13"
KEY_PREFIX = "agentconfig-redis-faults"
# Ten requests; one cache round trip each against the blackhole would take 10 x 0.5 s.
TEN_REQUESTS_SECONDS = 2.0
BLACKHOLE_LIFETIME = 60.0


def redis_cache(location: str) -> dict:
    """CACHES for a Redis at `location`, built as the settings build CACHE_URL."""
    with mock.patch.dict(os.environ, {"CACHE_URL": location}):
        cache = {**cache_from_env("locmemcache://unused"), "KEY_PREFIX": KEY_PREFIX}
    assert cache["BACKEND"] == "agentconfig.core.redis_cache.RedisCache"
    assert cache["OPTIONS"]["socket_timeout"] == 0.5
    return {"default": cache}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_forever() -> None:
        deadline = time.monotonic() + BLACKHOLE_LIFETIME
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_forever, name="redis-blackhole", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def real_redis_reachable() -> bool:
    client = redis.Redis.from_url(REAL_REDIS, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(params=["configured-cache", "redis-refusing", "redis-blackhole"])
def cache_backend(request, settings) -> Iterator[str]:
    """Django's default cache: as configured, or a Redis that cannot be used (checked)."""
    if request.param == "configured-cache":
        yield request.param
        return
    with contextlib.ExitStack() as stack:
        if request.param == "redis-refusing":
            port = _closed_port()
        else:
            port = stack.enter_context(blackhole())
        settings.CACHES = redis_cache(f"redis://127.0.0.1:{port}/0")
        # The fault is real: a cache call fails (refused at once, or after the timeout).
        started = time.monotonic()
        with pytest.raises(redis.RedisError):
            caches["default"].get("probe")
        if request.param == "redis-blackhole":
            assert time.monotonic() - started >= 0.4
        yield request.param


@pytest.fixture
def cache_calls(cache_backend) -> Iterator[list[str]]:
    """tests/conftest.py's cache_calls, on the cache `cache_backend` configured.

    The shared one patches with the test's `monkeypatch`, which pytest-django's autouse
    fixtures create first, so it is undone only after the settings are restored: on the
    restored cache. This one is undone before.
    """
    calls: list[str] = []
    with spying_on_cache(calls):
        yield calls


@pytest.fixture
def served(agent, production):
    """support-bot v1 in production, a web-search flag on for ana, and a key."""
    factories.deploy(factories.create_version(agent), production)
    search = make_flag("web-search")
    set_rules(search, production, [{"users": ["ana"], "variant": "on"}], default_variant="off")
    turn_on(search, production)
    return factories.create_api_key(production, name="runtime-eu")


def get_config(client, key: str, slug: str = "support-bot"):
    return client.get(
        reverse("runtime-config", args=[slug]),
        {"user_id": "ana"},
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def evaluate_flags(client, key: str):
    return client.post(
        reverse("ofrep-evaluate-flags"),
        data=json.dumps({"context": {"targetingKey": "ana"}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def timed_ten(request) -> tuple[float, list]:
    started = time.monotonic()
    responses = [request() for _ in range(10)]
    return time.monotonic() - started, responses


def fake_key() -> str:
    return f"acfg_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_runtime_requests__whatever_the_cache__correct_fast_and_no_cache_call(
    client, settings, served, cache_backend, cache_calls
):
    # Given every request refreshes from the feed (the path most likely to reach a cache)
    settings.AGENTCONFIG_REFRESH_INTERVAL = 0
    _, key = served

    # When config, OFREP bulk evaluation and the health check are asked ten times each
    config_seconds, configs = timed_ten(lambda: get_config(client, key))
    ofrep_seconds, evaluations = timed_ten(lambda: evaluate_flags(client, key))
    healthz_seconds, healths = timed_ten(lambda: client.get("/healthz"))

    # Then each answers right, ten of them in well under one Redis timeout each
    assert all(r.status_code == 200 and r.json()["version"]["number"] == 1 for r in configs)
    assert all(r.json()["flags"]["web-search"]["value"] is True for r in configs)
    expected_flag = {"key": "web-search", "value": True, "reason": "TARGETING_MATCH"}
    for response in evaluations:
        assert response.status_code == 200
        (flag,) = response.json()["flags"]
        assert flag.items() >= expected_flag.items()
    assert all(
        r.status_code == 200 and r.json() == {"database": "ok", "status": "ok"} for r in healths
    )
    assert config_seconds < TEN_REQUESTS_SECONDS, f"10 config requests: {config_seconds:.2f} s"
    assert ofrep_seconds < TEN_REQUESTS_SECONDS, f"10 OFREP requests: {ofrep_seconds:.2f} s"
    assert healthz_seconds < TEN_REQUESTS_SECONDS, f"10 health checks: {healthz_seconds:.2f} s"
    # And the cache was never called
    assert cache_calls == []


def test_deploy_and_revocation__made_while_redis_unusable__served_at_once(
    client, production, agent, served, cache_backend, cache_calls
):
    # Given v1 served with two keys
    revoked_key, revoked = served
    kept = factories.create_api_key(production, name="runtime-us")[1]
    assert get_config(client, revoked).json()["version"]["number"] == 1

    # When v2 is deployed and one key revoked, with the cache unusable
    factories.deploy(factories.create_version(agent), production)
    revoke_api_key(key=revoked_key, actor=Actor.system("ops"), reason="leaked")

    # Then the next requests get v2, and 401 for the revoked key, without a cache call
    assert get_config(client, kept).json()["version"]["number"] == 2
    assert get_config(client, revoked).status_code == 401
    assert evaluate_flags(client, revoked).status_code == 401
    assert cache_calls == []


@pytest.mark.parametrize("cache_backend", ["redis-refusing", "redis-blackhole"], indirect=True)
def test_changes_made_while_redis_unusable__redis_comes_back__still_served(
    client, settings, production, agent, served, cache_backend, cache_calls
):
    if not real_redis_reachable():
        pytest.skip(f"no Redis at {REAL_REDIS}: cannot test Redis coming back")
    # Given v2 deployed and a key revoked while Redis could not be used
    revoked_key, revoked = served
    kept = factories.create_api_key(production, name="runtime-us")[1]
    assert get_config(client, kept).json()["version"]["number"] == 1
    factories.deploy(factories.create_version(agent), production)
    revoke_api_key(key=revoked_key, actor=Actor.system("ops"), reason="leaked")
    assert get_config(client, kept).json()["version"]["number"] == 2
    assert cache_calls == []

    # When Redis comes back
    settings.CACHES = redis_cache(REAL_REDIS)
    back = redis.Redis.from_url(REAL_REDIS)
    try:
        before = set(back.scan_iter(f"*{KEY_PREFIX}*"))
        with spying_on_cache(cache_calls):
            configs = [get_config(client, kept) for _ in range(5)]
            refusals = [get_config(client, revoked) for _ in range(5)]
            evaluations = [evaluate_flags(client, revoked) for _ in range(5)]

        # Then the changes are still served, and the cache is not used now either
        assert all(r.json()["version"]["number"] == 2 for r in configs)
        assert all(r.status_code == 401 for r in refusals + evaluations)
        assert cache_calls == []
        assert set(back.scan_iter(f"*{KEY_PREFIX}*")) == before
    finally:
        back.close()


def test_unknown_keys__200_random_well_formed__401_no_state_no_query_no_cache_call(
    client, settings, production, served, cache_backend, cache_calls, django_assert_num_queries
):
    # Given a loaded snapshot that stays fresh for the whole test, and two real keys
    settings.AGENTCONFIG_REFRESH_INTERVAL = 60
    factories.create_api_key(production, name="runtime-us")
    _, key = served
    assert get_config(client, key).status_code == 200
    assert evaluate_flags(client, key).status_code == 200
    keys_known = len(snapshot._keys)
    values, errors = dict(snapshot._values), dict(snapshot._errors)
    assert keys_known == 2
    fakes = [fake_key() for _ in range(200)]
    assert all(key_id_of(fake) is not None for fake in fakes)  # they pass the format check

    # When 200 strangers ask, each with a well-formed key that was never issued
    with django_assert_num_queries(0):
        configs = [get_config(client, fake) for fake in fakes]
        evaluations = [evaluate_flags(client, fake) for fake in fakes]

    # Then every one is refused, and they leave nothing behind
    assert {(r.status_code, r.json()["error"]["code"]) for r in configs} == {
        (401, "invalid_api_key")
    }
    assert {r.status_code for r in evaluations} == {401}
    assert len(snapshot._keys) == keys_known
    assert snapshot._values == values and snapshot._errors == errors
    assert cache_calls == []
