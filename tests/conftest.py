"""Fixtures shared by every test module. Models with invariants are built through services."""

import pytest
from django.core.cache import cache
from django.db import connection

from agentconfig.actors import Actor
from deployments import runtime
from tests import factories


@pytest.fixture(autouse=True)
def _clear_cache():
    # The cache may be a real Redis shared by the whole run: start every test empty.
    cache.clear()
    runtime.local_documents.clear()
    yield
    cache.clear()
    runtime.local_documents.clear()


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


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    if _is_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
