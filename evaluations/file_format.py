"""The suite file: `evals/<agent-slug>.yaml`, every evaluation suite of one agent. Pure module.

A suite file looks like this::

    agent: support-bot              # must equal the file name without .yaml
    suites:
      smoke:                        # the suite's slug
        name: Smoke tests           # optional, default the slug
        description: The questions every version must get right.   # optional
        change_description: Add the refund case.                   # optional
        cases:
          - id: refund-window
            input: How long do I have to return an item?
            golden_answer: 30 days from delivery.

Cases are described in evaluations/cases.py.

Invariants it keeps:
- The YAML is read with the agent files' loader (versions.file_format.load_yaml): the
  safe constructors only, duplicate keys and aliases refused.
- Unknown keys are errors at every level; every problem in the file is reported at once,
  each with its location (`suites.smoke.cases[3].scorer`, cases counted from 1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaluations.cases import CaseError, check_text, normalize_cases
from versions.file_format import (
    AgentFileError,
    Problem,
    file_name_mismatch,
    kind,
    load_yaml,
    unknown_field,
)

FILE_SUFFIX = ".yaml"
TOP_LEVEL_FIELDS = ("agent", "suites")
SUITE_FIELDS = ("name", "description", "change_description", "cases")
# The same rule as agentconfig.models.SLUG_PATTERN (the model validator checks again).
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class SuiteSpec:
    """One suite as written in its file; `cases` are normalised."""

    slug: str
    name: str
    description: str
    change_description: str | None
    cases: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SuiteFile:
    agent: str
    suites: tuple[SuiteSpec, ...]


class SuiteFileError(ValueError):
    """Every problem found in one suite file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def parse_suite_file(text: str, *, file_stem: str) -> SuiteFile:
    """Parse and validate one suite file's text; `file_stem` is its name without `.yaml`."""
    try:
        data = load_yaml(text)
    except AgentFileError as exc:
        raise SuiteFileError([Problem(p.location, p.message) for p in exc.problems]) from None
    if not isinstance(data, Mapping):
        found = "empty" if data is None else kind(data)
        raise SuiteFileError(
            [
                Problem(
                    "", f"the file must be a mapping with the keys agent and suites; it is {found}."
                )
            ]
        )
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_LEVEL_FIELDS:
            problems.append(Problem(str(key), unknown_field(str(key), TOP_LEVEL_FIELDS)))

    agent = data.get("agent")
    if agent is None:
        problems.append(Problem("agent", f"is required: the agent's slug, {file_stem!r}."))
    elif not isinstance(agent, str):
        problems.append(Problem("agent", f"must be text, not {kind(agent)}."))
    elif agent != file_stem:
        problems.append(Problem("agent", file_name_mismatch("agent", agent, file_stem)))

    suites: list[SuiteSpec] = []
    raw_suites = data.get("suites")
    if raw_suites is None:
        problems.append(Problem("suites", "is required: a mapping of suite slug to suite."))
    elif not isinstance(raw_suites, Mapping) or not raw_suites:
        problems.append(
            Problem("suites", f"must be a mapping of suite slug to suite, not {kind(raw_suites)}.")
        )
    else:
        for slug, raw in raw_suites.items():
            suite = _suite(slug, raw, problems)
            if suite is not None:
                suites.append(suite)

    if problems:
        raise SuiteFileError(problems)
    return SuiteFile(agent=str(agent), suites=tuple(suites))


def _suite(slug: Any, raw: Any, problems: list[Problem]) -> SuiteSpec | None:
    where = f"suites.{slug}"
    before = len(problems)
    if not isinstance(slug, str) or not SLUG.match(slug):
        problems.append(
            Problem(
                where,
                f"{slug!r} is not a suite slug: use 1-64 lowercase letters, digits and hyphens, "
                "starting and ending with a letter or digit (for example smoke).",
            )
        )
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(
                where,
                f"must be a mapping with the keys {', '.join(SUITE_FIELDS)}, not {kind(raw)}.",
            )
        )
        return None
    for key in raw:
        if key not in SUITE_FIELDS:
            problems.append(Problem(f"{where}.{key}", unknown_field(str(key), SUITE_FIELDS)))
    name = check_text(raw.get("name"), f"{where}.name", problems, required=False)
    if name is not None and len(name.strip()) > MAX_NAME_CHARS:
        problems.append(Problem(f"{where}.name", f"is longer than {MAX_NAME_CHARS} characters."))
    description = check_text(
        raw.get("description"), f"{where}.description", problems, required=False
    )
    change = check_text(
        raw.get("change_description"), f"{where}.change_description", problems, required=False
    )
    try:
        cases = normalize_cases(raw.get("cases"), location=f"{where}.cases")
    except CaseError as exc:
        problems.extend(exc.problems)
        cases = []
    if len(problems) > before:
        return None
    return SuiteSpec(
        slug=str(slug),
        name=(name or "").strip() or str(slug),
        description=(description or "").strip(),
        change_description=change.strip() if change and change.strip() else None,
        cases=tuple(cases),
    )
