"""Two editors of one flag at the same moment: the flag row lock and the revision settle it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agentconfig.core.errors import Conflict
from flags.models import FlagEnvironment
from tests import factories
from tests.flags.helpers import make_flag, set_rules

pytestmark = pytest.mark.django_db(transaction=True)


def test_set_flag_rules__two_editors_same_revision__one_saves_one_conflicts():
    # Given a flag both editors loaded at revision 0
    production = factories.environment("production")
    flag = make_flag("web-search")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def edit(user: str) -> None:
        try:
            barrier.wait()
            set_rules(
                flag,
                production,
                [{"users": [user], "variant": "on"}],
                expected_revision=0,
                reason=f"by {user}",
            )
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    # When both save at once
    threads = [threading.Thread(target=edit, args=(u,)) for u in ("ana", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one change exists, and the history agrees with the row
    assert sorted(outcomes) == ["conflict", "saved"]
    state = FlagEnvironment.objects.get(flag=flag, environment=production)
    assert state.revision == 1
    assert state.history.first().rules == state.rules
    assert state.history.filter(history_type="~").count() == 1
