"""Import evaluation suites from `evals/<agent-slug>.yaml` files: `manage.py sync_evals PATH`.

The same rules as the agent import (versions/sync.py):
- Every file is validated before anything is written; one invalid file means nothing is
  written, and SyncError lists every problem, each naming the file and the field.
- All writes happen in one transaction.
- A suite is created when missing; its name and description follow the file; a suite
  version is created only when the cases differ from the suite's latest version, so a
  second run with the same files writes nothing.
- The suite version's change description is the file's `change_description`, or
  "Imported from <path relative to the folder>".
- `check_only=True` validates the files and never touches the database (so CI can run it
  without one); whether each agent exists is then not checked.
- Suites that a file no longer lists are left alone: their versions are history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from evaluations.cases import case_for_file, content_hash
from evaluations.file_format import FILE_SUFFIX, SuiteFileError, SuiteSpec, parse_suite_file
from evaluations.models import EvaluationSuite, SuiteSource, SuiteVersion
from evaluations.services.suites import (
    ADD_SUITE_PERMISSION,
    ADD_SUITE_VERSION_PERMISSION,
    CHANGE_SUITE_PERMISSION,
    create_suite,
    create_suite_version,
    update_suite,
    validate_change_description,
)
from versions.sync import MAX_FILE_BYTES, MISNAMED_SUFFIXES, SyncError

Action = Literal["valid", "created", "new_version", "unchanged"]


@dataclass(frozen=True)
class SuiteResult:
    """What the sync did (or, with check_only, found valid) for one suite."""

    agent: str
    suite: str
    source_path: str
    action: Action
    case_count: int
    version_number: int | None = None
    updated_fields: tuple[str, ...] = ()

    def describe(self) -> str:
        name = f"{self.agent}/{self.suite}"
        cases = f"{self.case_count} case{'s' if self.case_count != 1 else ''}"
        if self.action == "valid":
            return f"{name}: valid, {cases} ({self.source_path})"
        if self.action == "created":
            return f"{name}: created suite, v{self.version_number}, {cases} ({self.source_path})"
        updated = f"updated {' and '.join(self.updated_fields)}; " if self.updated_fields else ""
        if self.action == "new_version":
            return (
                f"{name}: {updated}new version v{self.version_number}, {cases} ({self.source_path})"
            )
        return f"{name}: {updated}unchanged at v{self.version_number} ({self.source_path})"


@dataclass(frozen=True)
class SyncReport:
    path: str
    check_only: bool
    results: tuple[SuiteResult, ...] = ()

    def count(self, action: Action) -> int:
        return sum(1 for result in self.results if result.action == action)

    def summary(self) -> str:
        suites = _plural(len(self.results), "suite")
        if self.check_only:
            return f"{suites} in {self.path}: all valid. Nothing was written (--check)."
        return (
            f"Synced {suites} from {self.path}: {self.count('created')} created, "
            f"{_plural(self.count('new_version'), 'new version')}, "
            f"{self.count('unchanged')} unchanged."
        )


@dataclass(frozen=True)
class _Entry:
    source_path: str
    agent_slug: str
    suite: SuiteSpec
    change_description: str
    content_hash: str


def sync_evals(
    *, path: str | os.PathLike[str], actor: Actor, check_only: bool = False
) -> SyncReport:
    """Create missing suites and new suite versions from the suite files under `path`."""
    root = Path(path)
    entries, errors = _read_and_validate(root)
    agents: dict[str, Agent] = {}
    if not check_only:
        agents = {a.slug: a for a in Agent.objects.filter(slug__in={e.agent_slug for e in entries})}
        for entry in entries:
            if entry.agent_slug not in agents:
                errors.append(
                    f"{_shown(root, entry.source_path)}: agent: there is no agent "
                    f"{entry.agent_slug!r}. Create it first (sync_agents, or the admin)."
                )
    if errors:
        _refuse(root, errors)
    if check_only:
        results = tuple(
            SuiteResult(e.agent_slug, e.suite.slug, e.source_path, "valid", len(e.suite.cases))
            for e in entries
        )
        return SyncReport(path=str(path), check_only=True, results=results)
    with transaction.atomic():
        results = _write(entries, agents, actor)
    return SyncReport(path=str(path), check_only=False, results=results)


def _read_and_validate(root: Path) -> tuple[list[_Entry], list[str]]:
    if not root.exists():
        raise SyncError([f"{root}: does not exist. Give the folder that holds the suite files."])
    errors: list[str]
    if root.is_file():
        files, errors = [root], []
        base = root.parent
    else:
        files, errors = _discover(root)
        base = root
        if not files and not errors:
            raise SyncError(
                [
                    f"{root}: no suite files found. Expected one <agent-slug>{FILE_SUFFIX} "
                    "file per agent (for example support-bot.yaml)."
                ]
            )
    entries: list[_Entry] = []
    first_path_of: dict[str, str] = {}
    for file in files:
        relative = file.relative_to(base).as_posix()
        shown = str(base / relative)
        if file.stem in first_path_of:
            errors.append(
                f"{shown}: agent: the suites of {file.stem!r} are also in "
                f"{base / first_path_of[file.stem]}. Each agent must have exactly one file."
            )
            continue
        first_path_of[file.stem] = relative
        file_entries, problems = _validate_file(file, relative)
        errors.extend(f"{shown}: {problem}" for problem in problems)
        entries.extend(file_entries)
    return entries, errors


def _discover(root: Path) -> tuple[list[Path], list[str]]:
    found: list[Path] = []
    errors: list[str] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = Path(folder) / name
            if file.suffix == FILE_SUFFIX:
                found.append(file)
            elif file.suffix.lower() in (FILE_SUFFIX, *MISNAMED_SUFFIXES):
                errors.append(
                    f"{file}: suite files must end in {FILE_SUFFIX!r}. "
                    f"Rename it to {file.stem + FILE_SUFFIX!r}."
                )
    return sorted(found, key=lambda f: f.relative_to(root).as_posix()), errors


def _validate_file(file: Path, relative: str) -> tuple[list[_Entry], list[str]]:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return [], [f"is larger than {MAX_FILE_BYTES:,} bytes; this is not a suite file."]
        data = file.read_bytes()
    except OSError as exc:
        return [], [f"cannot be read: {exc.strerror or exc}."]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [], [f"line {line}: is not UTF-8 text. Save the file as UTF-8."]
    try:
        parsed = parse_suite_file(text, file_stem=file.stem)
    except SuiteFileError as exc:
        return [], [str(problem) for problem in exc.problems]

    problems: list[str] = []
    limit = SuiteVersion._meta.get_field("source_path").max_length or 0
    if len(relative) > limit:
        problems.append(f"the path is longer than {limit} characters; shorten it.")
    entries: list[_Entry] = []
    for suite in parsed.suites:
        where = f"suites.{suite.slug}"
        candidate = EvaluationSuite(slug=suite.slug, name=suite.name, description=suite.description)
        try:
            candidate.full_clean(
                exclude=["agent"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            problems.extend(
                f"{where}.{field}: {m}" for field, ms in exc.message_dict.items() for m in ms
            )
        if suite.change_description is None:
            change = f"Imported from {relative}"
        else:
            try:
                change = validate_change_description(suite.change_description)
            except ValidationError as exc:
                problems.extend(f"{where}.{m}" for m in _lines(exc))
                change = ""
        entries.append(_Entry(relative, parsed.agent, suite, change, content_hash(suite.cases)))
    return ([] if problems else entries), problems


def _write(
    entries: list[_Entry], agents: dict[str, Agent], actor: Actor
) -> tuple[SuiteResult, ...]:
    existing: dict[tuple[str, str], EvaluationSuite] = {
        (suite.agent.slug, suite.slug): suite
        for suite in EvaluationSuite.objects.select_for_update()
        .select_related("agent")
        .filter(agent__slug__in=agents)
        .order_by("agent__slug", "slug")
    }
    latest: dict[int, SuiteVersion] = {}
    for version in SuiteVersion.objects.filter(
        suite__in=[s.pk for s in existing.values()]
    ).order_by("suite_id", "version_number"):
        latest[version.suite_id] = version

    # Permissions first, so a refusal comes before any write rather than half-way.
    new = [e for e in entries if (e.agent_slug, e.suite.slug) not in existing]
    if new:
        actor.require(ADD_SUITE_PERMISSION, "create evaluation suites")
    if any(
        _changed_fields(existing[(e.agent_slug, e.suite.slug)], e.suite)
        for e in entries
        if (e.agent_slug, e.suite.slug) in existing
    ):
        actor.require(CHANGE_SUITE_PERMISSION, "change evaluation suites")
    if new or any(
        _latest_hash(latest, existing[(e.agent_slug, e.suite.slug)]) != e.content_hash
        for e in entries
        if (e.agent_slug, e.suite.slug) in existing
    ):
        actor.require(ADD_SUITE_VERSION_PERMISSION, "create suite versions")

    results: list[SuiteResult] = []
    for entry in entries:
        spec = entry.suite
        suite = existing.get((entry.agent_slug, spec.slug))
        action: Action
        updated: tuple[str, ...] = ()
        if suite is None:
            suite = create_suite(
                agent=agents[entry.agent_slug],
                slug=spec.slug,
                name=spec.name,
                description=spec.description,
                actor=actor,
            )
            action, version = "created", _create_version(suite, entry, actor)
        else:
            updated = update_suite(
                suite=suite,
                actor=actor,
                name=spec.name,
                description=spec.description,
                reason=f"{actor.label}: from {entry.source_path}",
            )
            current = latest.get(suite.pk)
            if current is not None and current.content_hash == entry.content_hash:
                action, version = "unchanged", current
            else:
                action, version = "new_version", _create_version(suite, entry, actor)
        results.append(
            SuiteResult(
                entry.agent_slug,
                spec.slug,
                entry.source_path,
                action,
                len(spec.cases),
                version.version_number,
                updated,
            )
        )
    return tuple(results)


def _create_version(suite: EvaluationSuite, entry: _Entry, actor: Actor) -> SuiteVersion:
    return create_suite_version(
        suite=suite,
        actor=actor,
        cases=[case_for_file(case) for case in entry.suite.cases],
        change_description=entry.change_description,
        source=SuiteSource.FILE_IMPORT,
        source_path=entry.source_path,
    )


def _latest_hash(latest: dict[int, SuiteVersion], suite: EvaluationSuite) -> str | None:
    version = latest.get(suite.pk)
    return version.content_hash if version else None


def _changed_fields(suite: EvaluationSuite, spec: SuiteSpec) -> tuple[str, ...]:
    return tuple(
        name for name in ("name", "description") if getattr(suite, name) != getattr(spec, name)
    )


def _refuse(root: Path, errors: list[str]) -> None:
    errors.sort(key=lambda error: error.split(": ", 1)[0])  # stable: a file keeps its order
    files = {error.split(": ", 1)[0] for error in errors}
    raise SyncError(
        errors,
        heading=(
            f"Nothing was written: {_plural(len(errors), 'problem')} in "
            f"{_plural(len(files), 'file')} under {root}:"
        ),
    )


def _shown(root: Path, relative: str) -> str:
    return str((root.parent if root.is_file() else root) / relative)


def _lines(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [f"{name}: {m}" for name, messages in error.message_dict.items() for m in messages]
    return list(error.messages)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
