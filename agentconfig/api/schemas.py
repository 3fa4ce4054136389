"""The request and response bodies of the management API (the OpenAPI document's schemas).

Responses are read from the model instances (ninja's schemas read attributes); a field
whose name differs from the model's says where it comes from (`validation_alias`, or a
`resolve_<field>` method).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema
from pydantic import Field

from deployments.models import Pointer
from versions.models import AgentVersion


class AgentOut(Schema):
    slug: str
    name: str
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime
    latest_version: int | None = Field(
        validation_alias="latest_number", description="The highest version number; null if none."
    )


class Config(Schema):
    """The six fields of a configuration, as the runtime endpoint serves them."""

    system_prompt: str
    model: str
    temperature: float
    max_tokens: int
    tools: list[Any]
    guardrails: dict[str, Any]


class VersionSummary(Schema):
    agent: str
    number: int = Field(validation_alias="version_number")
    change_description: str
    source: str
    config_hash: str
    created_at: dt.datetime
    created_by: str = Field(validation_alias="created_by_label")
    derived_from: int | None = Field(description="The version this one was made from.")

    @staticmethod
    def resolve_agent(version: AgentVersion) -> str:
        return version.agent.slug

    @staticmethod
    def resolve_derived_from(version: AgentVersion) -> int | None:
        derived = version.derived_from
        return derived.version_number if derived is not None else None


class VersionOut(VersionSummary):
    config: Config

    @staticmethod
    def resolve_config(version: AgentVersion) -> AgentVersion:
        return version  # Config reads its six fields from the version


class VersionIn(Schema):
    """A new version: the whole configuration and why it changed.

    `config` is checked by the same rules as every other way of making a version
    (required fields, ranges, credential scan); its messages come back by field.
    """

    config: dict[str, Any] = Field(
        description="system_prompt, model, temperature, max_tokens, tools, guardrails."
    )
    change_description: str = Field(description="What changed and why, in a sentence.")


class Canary(Schema):
    version: int
    percent: float


class Active(Schema):
    agent: str
    version: int
    canary: Canary | None = None
    updated_at: dt.datetime
    updated_by: str = Field(validation_alias="updated_by_label")

    @staticmethod
    def resolve_agent(pointer: Pointer) -> str:
        return pointer.agent.slug

    @staticmethod
    def resolve_version(pointer: Pointer) -> int:
        return pointer.stable_version.version_number

    @staticmethod
    def resolve_canary(pointer: Pointer) -> dict[str, Any] | None:
        rollout = pointer.canary
        if rollout is None:
            return None
        return {
            "version": rollout.canary_version.version_number,
            "percent": rollout.basis_points / 100,
        }


class EnvironmentOut(Schema):
    slug: str
    name: str
    required_approvals: int
    active: list[Active] = Field(description="What each deployed agent serves here.")
