"""Flag test data built through the real services."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client
from django.urls import reverse

from flags.models import Flag
from flags.services import flags as flag_services
from tests import factories

ACTOR = factories.ACTOR


def make_flag(key: str = "web-search", kind: str = "boolean", **fields: Any) -> Flag:
    """A flag created by the service (off everywhere)."""
    return flag_services.create_flag(key=key, kind=kind, actor=ACTOR, **fields)


def _setup(fields: dict[str, Any]) -> dict[str, Any]:
    """Test setup by the system actor skips approvals (break glass), like factories.deploy;
    a test that passes its own actor gets the real rule."""
    actor = fields.pop("actor", ACTOR)
    if actor is ACTOR:
        fields.setdefault("break_glass", factories.SETUP_BREAK_GLASS)
    return {"actor": actor, **fields}


def set_rules(flag: Flag, environment, rules: list[dict[str, Any]], **fields: Any):
    default_variant, off_variant = flag.initial_variants
    return flag_services.set_flag_rules(
        flag=flag,
        environment=environment,
        rules=rules,
        default_variant=fields.pop("default_variant", default_variant),
        off_variant=fields.pop("off_variant", off_variant),
        **_setup(fields),
    )


def turn_on(flag: Flag, environment, reason: str = "", **fields: Any) -> None:
    flag_services.set_flag_enabled(
        flag=flag, environment=environment, enabled=True, reason=reason, **_setup(fields)
    )


def gate(agent, tool_name: str, flag: Flag, **fields: Any):
    return flag_services.create_tool_gate(
        agent=agent, tool_name=tool_name, flag=flag, **_setup(fields)
    )


def evaluate_at_runtime(key: str, flag_key: str, user: str = "ana") -> Any:
    """What a runtime holding `key` is told about the flag for `user` (OFREP, one flag)."""
    return Client().post(
        reverse("ofrep-evaluate-flag", args=[flag_key]),
        data=json.dumps({"context": {"targetingKey": user}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def banner_and_limits(agent, environment) -> None:
    """banner: a string flag on in `environment` (long, off: short); limits: a JSON flag
    scoped to `agent`, off everywhere."""
    banner = make_flag(
        "banner",
        kind="string",
        variants=[{"name": "short", "value": "Hi"}, {"name": "long", "value": "Hello there"}],
    )
    set_rules(banner, environment, [], default_variant="long", off_variant="short")
    turn_on(banner, environment)
    make_flag(
        "limits",
        kind="json",
        agent=agent,
        variants=[{"name": "small", "value": {"max": 3}}, {"name": "large", "value": {"max": 20}}],
    )
