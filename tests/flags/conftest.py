"""Fixtures of the flag tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from tests.flags.helpers import client_for


@pytest.fixture
def client_with_permissions(db) -> Callable[..., Client]:
    """Log in a new staff user holding exactly the given permissions ('app.codename')."""
    return client_for
