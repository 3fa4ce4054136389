"""The request and response bodies of the management API (the OpenAPI document's schemas)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema
from pydantic import Field

from agentconfig.models import Agent
from deployments.models import Environment, Pointer
from versions.models import AgentVersion


class AgentOut(Schema):
    slug: str
    name: str
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime
    latest_version: int | None = Field(description="The highest version number; null if none.")

    @staticmethod
    def of(agent: Agent, latest_version: int | None) -> AgentOut:
        return AgentOut(
            slug=agent.slug,
            name=agent.name,
            description=agent.description,
            created_at=agent.created_at,
            updated_at=agent.updated_at,
            latest_version=latest_version,
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
    number: int
    change_description: str
    source: str
    config_hash: str
    created_at: dt.datetime
    created_by: str
    derived_from: int | None = Field(description="The version this one was made from.")

    @staticmethod
    def fields_of(version: AgentVersion) -> dict[str, Any]:
        derived = version.derived_from
        return {
            "agent": version.agent.slug,
            "number": version.version_number,
            "change_description": version.change_description,
            "source": version.source,
            "config_hash": version.config_hash,
            "created_at": version.created_at,
            "created_by": version.created_by_label,
            "derived_from": derived.version_number if derived is not None else None,
        }

    @classmethod
    def of(cls, version: AgentVersion) -> VersionSummary:
        return cls(**cls.fields_of(version))


class VersionOut(VersionSummary):
    config: Config

    @classmethod
    def of(cls, version: AgentVersion) -> VersionOut:
        config = Config(
            system_prompt=version.system_prompt,
            model=version.model,
            temperature=version.temperature,
            max_tokens=version.max_tokens,
            tools=version.tools,
            guardrails=version.guardrails,
        )
        return cls(**cls.fields_of(version), config=config)


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
    updated_by: str

    @staticmethod
    def of(pointer: Pointer) -> Active:
        rollout = pointer.canary
        canary = None
        if rollout is not None:
            canary = Canary(
                version=rollout.canary_version.version_number,
                percent=rollout.basis_points / 100,
            )
        return Active(
            agent=pointer.agent.slug,
            version=pointer.stable_version.version_number,
            canary=canary,
            updated_at=pointer.updated_at,
            updated_by=pointer.updated_by_label,
        )


class EnvironmentOut(Schema):
    slug: str
    name: str
    required_approvals: int
    active: list[Active] = Field(description="What each deployed agent serves here.")

    @staticmethod
    def of(environment: Environment, pointers: list[Pointer]) -> EnvironmentOut:
        return EnvironmentOut(
            slug=environment.slug,
            name=environment.name,
            required_approvals=environment.required_approvals,
            active=[Active.of(pointer) for pointer in pointers],
        )
