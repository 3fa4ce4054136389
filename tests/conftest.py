"""Fixtures shared by every test module. Models with invariants are built through services."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test import Client

from agentconfig.core.actors import Actor
from delivery.snapshot import snapshot
from tests import factories
from tests.versions.git_helpers import isolate_git


@pytest.fixture(autouse=True)
def _fresh_state():
    # The cache may be a real Redis shared by the whole run, and the process's runtime
    # snapshot would remember the previous test's rolled-back rows: start every test empty.
    cache.clear()
    snapshot.reset()
    yield
    cache.clear()
    snapshot.reset()


CACHE_METHODS = ("get", "get_many", "set", "set_many", "add", "incr", "delete", "delete_many")


@contextlib.contextmanager
def spying_on_cache(calls: list[str]) -> Iterator[None]:
    """Record in `calls` every call made to Django's default cache, as configured now."""
    # The cache object itself, not the `cache` proxy: undone on this object even if the
    # settings change meanwhile.
    target = caches["default"]
    with pytest.MonkeyPatch.context() as patch:
        for name in CACHE_METHODS:
            method = getattr(target, name)

            def spy(*args, _name=name, _method=method, **kwargs):
                calls.append(_name)
                return _method(*args, **kwargs)

            patch.setattr(target, name, spy)
        yield


@pytest.fixture
def cache_calls() -> Iterator[list[str]]:
    """Every call made to Django's cache (locmem or Redis) while the test runs.

    Its own MonkeyPatch, undone before pytest-django restores changed settings: the spies
    sit on the cache object the test used.
    """
    calls: list[str] = []
    with spying_on_cache(calls):
        yield calls


@pytest.fixture
def git_config(tmp_path, monkeypatch) -> Path:
    """An empty global git config for the test and the code under test; its path."""
    return isolate_git(tmp_path, monkeypatch)


@pytest.fixture
def system_actor() -> Actor:
    return Actor.system("tests")


@pytest.fixture
def agent(db):
    return factories.create_agent(slug="support-bot")


@pytest.fixture
def production(db):
    return factories.environment("production")


@pytest.fixture
def staging(db):
    return factories.environment("staging")


@pytest.fixture
def api_key(production) -> str:
    """A plaintext key for the production environment."""
    return factories.create_api_key(environment=production)[1]


@pytest.fixture
def client_with_permissions(db) -> Callable[..., Client]:
    """Log in a new staff user holding exactly the given permissions ('app.codename')."""
    return factories.client_for


@pytest.fixture
def staff_client(db) -> Client:
    """A staff user without any permission."""
    return factories.client_for()


@pytest.fixture
def viewer_client(db) -> Client:
    """A staff user who may look at everything and change nothing."""
    return factories.client_for(
        "agentconfig.view_agent",
        "versions.view_agentversion",
        "deployments.view_pointer",
        "deployments.view_environment",
        "deployments.view_releaselogentry",
        "deployments.view_apikey",
    )


@pytest.fixture
def user_with(db) -> Callable[..., Any]:
    """Make a user holding exactly the given permissions ('app.codename') and groups."""
    return factories.user_with


@pytest.fixture
def people(db) -> factories.People:
    """The role users (editor, reviewer, deployer, admin, ...), made when first asked for."""
    return factories.People()


@pytest.fixture
def boss(db):
    """A member of Admins (may create users and change roles), not a superuser."""
    return factories.member("boss", "Admins")


@pytest.fixture
def root(db):
    """A superuser."""
    return factories.user_with(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def alice(db):
    """An editor."""
    return factories.member("alice", "Editors")


@pytest.fixture
def live(agent, production):
    """support-bot: v1 active in production (one approval required), v2 made since."""
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    return v1, v2


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


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    if _is_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
