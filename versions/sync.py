"""Sync a folder of agent files into the database: `sync_agents(path=..., actor=...)`.

The folder holds one agent per file, `<slug>.yaml` (format: versions.file_format).

Decisions:
- Subfolders are read too, so agents can be grouped (`support/support-bot.yaml`); the
  slug is still the file name, so it must be unique across the whole tree. Hidden files
  and folders (a name starting with ".", such as .git) are skipped; symlinked folders are
  not followed.
- Only `.yaml` is an agent file. A `.yml` file is an error ("rename it"), never skipped
  in silence: a file that is quietly not imported is worse than one that is refused.
  Other files (README.md, ...) are ignored.
- The file is the source of truth for the agent's name and description: when they
  differ, the agent is updated (a normal save, so simple-history records it). A missing
  description means an empty one.
- A version is created only when the config hash differs from the agent's latest
  version (whoever created that one), so a second run with the same files writes nothing.
- The version's change description is the file's `change_description`, or
  "Imported from <path relative to the folder>" when the file has none.
- `check_only=True` validates everything and never touches the database, so CI can run
  it without one.

Invariants:
- Every file is validated before anything is written; one invalid file means nothing
  is written, and SyncError lists every problem, each naming the file and the field.
- All writes happen in one transaction: a failure half-way leaves nothing behind.
- Existing agents are locked (in slug order, so two syncs cannot deadlock) before their
  latest versions are compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery

from agentconfig.actors import Actor
from agentconfig.errors import ServiceError
from agentconfig.models import Agent
from versions.config import config_hash
from versions.file_format import FILE_SUFFIX, AgentFile, AgentFileError, parse_agent_file
from versions.models import AgentVersion, Source
from versions.services import (
    create_agent,
    create_version,
    update_agent,
    validate_change_description,
    validate_config,
)

MAX_FILE_BYTES = 2_000_000  # the prompt (200,000 characters) and guardrails fit many times over
MISNAMED_SUFFIXES = (".yml",)
Action = Literal["valid", "created", "new_version", "unchanged"]


class SyncError(ServiceError):
    """One or more agent files are invalid (or the folder is); nothing was written."""

    def __init__(self, errors: list[str], *, heading: str = "") -> None:
        self.errors = errors
        super().__init__("\n".join([heading, *errors]) if heading else "\n".join(errors))


@dataclass(frozen=True)
class AgentResult:
    """What the sync did (or, with check_only, found valid) for one agent file."""

    slug: str
    source_path: str
    action: Action
    version_number: int | None = None  # the version created, or the latest if unchanged
    updated_fields: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.action == "valid":
            return f"{self.slug}: valid ({self.source_path})"
        if self.action == "created":
            return f"{self.slug}: created agent, v{self.version_number} ({self.source_path})"
        updated = f"updated {' and '.join(self.updated_fields)}; " if self.updated_fields else ""
        if self.action == "new_version":
            return f"{self.slug}: {updated}new version v{self.version_number} ({self.source_path})"
        return f"{self.slug}: {updated}unchanged at v{self.version_number} ({self.source_path})"


@dataclass(frozen=True)
class SyncReport:
    """One result per agent file, in path order, and a summary line."""

    path: str
    check_only: bool
    results: tuple[AgentResult, ...] = ()

    def count(self, action: Action) -> int:
        return sum(1 for result in self.results if result.action == action)

    def summary(self) -> str:
        files = _plural(len(self.results), "agent file")
        if self.check_only:
            return f"{files} in {self.path}: all valid. Nothing was written (--check)."
        updated = sum(1 for result in self.results if result.updated_fields)
        parts = [
            f"{self.count('created')} created",
            f"{_plural(self.count('new_version'), 'new version')}",
            f"{self.count('unchanged')} unchanged",
        ]
        if updated:
            parts.append(f"{updated} with name or description updated")
        return f"Synced {files} from {self.path}: {', '.join(parts)}."


@dataclass(frozen=True)
class _FileError:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class _Entry:
    """A file that passed validation, ready to write."""

    source_path: str
    agent_file: AgentFile
    config_hash: str
    change_description: str


def sync_agents(
    *, path: str | os.PathLike[str], actor: Actor, check_only: bool = False
) -> SyncReport:
    """Create missing agents and new versions from the agent files under `path`."""
    root = Path(path)
    entries = _read_and_validate(root)
    if check_only:
        results = tuple(AgentResult(e.agent_file.slug, e.source_path, "valid") for e in entries)
        return SyncReport(path=str(path), check_only=True, results=results)
    with transaction.atomic():
        results = _write(entries, actor)
    return SyncReport(path=str(path), check_only=False, results=results)


def _read_and_validate(root: Path) -> list[_Entry]:
    if not root.exists():
        raise SyncError([f"{root}: does not exist. Give the folder that holds the agent files."])
    if not root.is_dir():
        raise SyncError(
            [f"{root}: is not a folder. Give the folder that holds the <slug>.yaml agent files."]
        )
    files, errors = _discover(root)
    if not files and not errors:
        raise SyncError(
            [
                f"{root}: no agent files found. Expected one <slug>{FILE_SUFFIX} file per agent "
                "(for example support-bot.yaml)."
            ]
        )

    entries: list[_Entry] = []
    first_path_of: dict[str, str] = {}  # by file stem, which every valid file's slug equals
    for file in files:
        relative = file.relative_to(root).as_posix()
        entry, problems = _validate_file(file, relative)
        if file.stem in first_path_of:
            problems.append(
                f"slug: the agent {file.stem!r} is also defined in "
                f"{root / first_path_of[file.stem]}. Each agent must have exactly one file."
            )
        else:
            first_path_of[file.stem] = relative
        if problems:
            errors.extend(_FileError(str(root / relative), problem) for problem in problems)
        elif entry is not None:
            entries.append(entry)

    if errors:
        errors.sort(key=lambda error: error.path)  # stable: a file's problems keep their order
        raise SyncError(
            [str(error) for error in errors],
            heading=(
                f"Nothing was written: {_plural(len(errors), 'problem')} in "
                f"{_plural(len({error.path for error in errors}), 'file')} under {root}:"
            ),
        )
    return entries


def _discover(root: Path) -> tuple[list[Path], list[_FileError]]:
    """The agent files under `root` in a stable order, and errors for misnamed ones."""
    found: list[Path] = []
    errors: list[_FileError] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = Path(folder) / name
            suffix = file.suffix
            if suffix == FILE_SUFFIX:
                found.append(file)
            elif suffix.lower() in (FILE_SUFFIX, *MISNAMED_SUFFIXES):
                errors.append(
                    _FileError(
                        str(file),
                        f"agent files must end in {FILE_SUFFIX!r}. "
                        f"Rename it to {file.stem + FILE_SUFFIX!r}.",
                    )
                )
    return sorted(found, key=lambda f: f.relative_to(root).as_posix()), errors


def _validate_file(file: Path, relative: str) -> tuple[_Entry | None, list[str]]:
    """The validated entry, or None and every problem in the file as 'field: message'."""
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return None, [f"is larger than {MAX_FILE_BYTES:,} bytes; this is not an agent file."]
        data = file.read_bytes()
    except OSError as exc:
        return None, [f"cannot be read: {exc.strerror or exc}."]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [f"line {line}: is not UTF-8 text. Save the file as UTF-8."]

    try:
        agent_file = parse_agent_file(text, file_stem=file.stem)
    except AgentFileError as exc:
        return None, [str(problem) for problem in exc.problems]

    problems: list[str] = []
    source_path_limit = AgentVersion._meta.get_field("source_path").max_length or 0
    if len(relative) > source_path_limit:
        problems.append(f"the path is longer than {source_path_limit} characters; shorten it.")
    # Field rules of the model (slug pattern, name length), without the database.
    candidate = Agent(
        slug=agent_file.slug, name=agent_file.name, description=agent_file.description
    )
    try:
        candidate.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        problems.extend(_lines(exc))
    try:
        config = validate_config(agent_file.config)
    except ValidationError as exc:
        problems.extend(_lines(exc, prefix="config."))
        config = agent_file.config
    if agent_file.change_description is None:
        change_description = f"Imported from {relative}"
    else:
        try:
            change_description = validate_change_description(agent_file.change_description)
        except ValidationError as exc:
            problems.extend(_lines(exc))
            change_description = ""
    if problems:
        return None, problems
    return _Entry(relative, agent_file, config_hash(config), change_description), []


def _write(entries: list[_Entry], actor: Actor) -> tuple[AgentResult, ...]:
    slugs = sorted(entry.agent_file.slug for entry in entries)
    latest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-version_number")
    existing = {
        agent.slug: agent
        for agent in Agent.objects.select_for_update()
        .filter(slug__in=slugs)
        .annotate(
            latest_hash=Subquery(latest.values("config_hash")[:1]),
            latest_number=Subquery(latest.values("version_number")[:1]),
        )
        .order_by("slug")
    }

    # Permissions first, so a refusal comes before any write rather than half-way.
    if any(entry.agent_file.slug not in existing for entry in entries):
        actor.require("agentconfig.add_agent", "create agents")
    if any(
        _changed_fields(existing[e.agent_file.slug], e.agent_file)
        for e in entries
        if e.agent_file.slug in existing
    ):
        actor.require("agentconfig.change_agent", "change agents")
    if any(
        e.agent_file.slug not in existing
        or existing[e.agent_file.slug].latest_hash != e.config_hash
        for e in entries
    ):
        actor.require("versions.add_agentversion", "create versions")

    results: list[AgentResult] = []
    for entry in entries:
        file = entry.agent_file
        agent = existing.get(file.slug)
        if agent is None:
            agent = create_agent(
                slug=file.slug, name=file.name, description=file.description, actor=actor
            )
            version = _create_version(agent, entry, actor)
            results.append(
                AgentResult(file.slug, entry.source_path, "created", version.version_number)
            )
            continue
        updated = _update_agent(agent, file, actor, entry.source_path)
        if agent.latest_hash == entry.config_hash:
            results.append(
                AgentResult(file.slug, entry.source_path, "unchanged", agent.latest_number, updated)
            )
        else:
            version = _create_version(agent, entry, actor)
            results.append(
                AgentResult(
                    file.slug, entry.source_path, "new_version", version.version_number, updated
                )
            )
    return tuple(results)


def _create_version(agent: Agent, entry: _Entry, actor: Actor) -> AgentVersion:
    return create_version(
        agent=agent,
        actor=actor,
        config=entry.agent_file.config,
        change_description=entry.change_description,
        source=Source.FILE_IMPORT,
        source_path=entry.source_path,
    )


def _update_agent(agent: Agent, file: AgentFile, actor: Actor, source_path: str) -> tuple[str, ...]:
    """Bring name and description in line with the file; the fields that changed."""
    return update_agent(
        agent=agent,
        actor=actor,
        name=file.name,
        description=file.description,
        reason=f"{actor.label}: from {source_path}",
    )


def _changed_fields(agent: Agent, file: AgentFile) -> tuple[str, ...]:
    return tuple(
        name for name in ("name", "description") if getattr(agent, name) != getattr(file, name)
    )


def _lines(error: ValidationError, prefix: str = "") -> list[str]:
    if hasattr(error, "error_dict"):
        return [
            f"{prefix}{name}: {message}" if name != "__all__" else message
            for name, messages in error.message_dict.items()
            for message in messages
        ]
    return list(error.messages)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
