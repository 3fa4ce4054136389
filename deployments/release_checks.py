"""Checks that every release must pass, added by the apps above deployments.

The evaluation gate (evaluations.gate.release_check) registers itself here when the
evaluations app is ready, so that deployments never imports evaluations (apps depend in
one direction: docs/architecture.md) while every deploy, canary start and applied request
still passes the gate: `deployments.approvals.clear_release` runs every registered check.

A check refuses by raising a ServiceError, or returns the release-log details that say
why the release may go ahead (e.g. {"evaluation": "passed"}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deployments.models import Environment
from versions.models import AgentVersion

ReleaseCheck = Callable[[Environment, AgentVersion], dict[str, Any]]

_CHECKS: dict[str, ReleaseCheck] = {}


def register_release_check(name: str, check: ReleaseCheck) -> None:
    """Run `check` on every release from now on (once per name: re-registering replaces)."""
    _CHECKS[name] = check


def run_release_checks(environment: Environment, version: AgentVersion) -> dict[str, Any]:
    """Refuse unless every registered check passes; the details they return, merged."""
    details: dict[str, Any] = {}
    for check in _CHECKS.values():
        details.update(check(environment, version))
    return details
