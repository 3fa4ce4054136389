"""Sync a folder of agent files into the database: `sync_agents(path=..., actor=...)`.

The folder holds one agent per file, `<slug>.yaml` (format: versions.file_format).
The same validation and report serve the sync from a git repository
(versions.git_sync), which reads the files from a commit instead of a folder.

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
from pathlib import Path, PurePosixPath
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery

from agentconfig.core.actors import Actor
from agentconfig.core.errors import ServiceError
from agentconfig.models import Agent
from versions.config import config_hash
from versions.file_format import (
    FILE_SUFFIX,
    MAX_FILE_BYTES,
    AgentFile,
    AgentFileError,
    parse_agent_file,
)
from versions.models import AgentVersion, Source
from versions.services import (
    create_agent,
    create_version,
    update_agent,
    validate_change_description,
    validate_config,
)

MISNAMED_SUFFIXES = (".yml",)
Action = Literal[
    "valid",  # --check: the file is valid; nothing was compared or written
    "created",  # a new agent and its v1
    "new_version",  # the file's config differs: a new version
    "unchanged",  # the file's config is the latest version's
    "kept",  # git: a newer version made outside git was left alone (see versions.git_sync)
    "missing",  # git: the agent was synced from git before; no file at this commit
]


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
    note: str = ""  # why, when the rule that applied is not obvious (git sync)

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        if self.action == "valid":
            return f"{self.slug}: valid ({self.source_path})"
        if self.action == "created":
            return f"{self.slug}: created agent, v{self.version_number} ({self.source_path}){note}"
        if self.action == "missing":
            return (
                f"{self.slug}: no file at this commit; left unchanged at "
                f"v{self.version_number}{note}"
            )
        updated = f"updated {' and '.join(self.updated_fields)}; " if self.updated_fields else ""
        if self.action == "new_version":
            return (
                f"{self.slug}: {updated}new version v{self.version_number} "
                f"({self.source_path}){note}"
            )
        if self.action == "kept":
            return f"{self.slug}: {updated}kept v{self.version_number} ({self.source_path}){note}"
        return (
            f"{self.slug}: {updated}unchanged at v{self.version_number} ({self.source_path}){note}"
        )


@dataclass(frozen=True)
class SyncReport:
    """One result per agent file, in path order, and a summary line."""

    path: str  # the folder, or "<repository> at <commit>" for a git sync
    check_only: bool
    results: tuple[AgentResult, ...] = ()
    releases: tuple[str, ...] = ()  # git: one line per deploy or deployment request
    heading: str = ""  # git: the commit that was read

    def count(self, action: Action) -> int:
        return sum(1 for result in self.results if result.action == action)

    def summary(self) -> str:
        files = plural(len(self.results) - self.count("missing"), "agent file")
        if self.check_only:
            return f"{files} in {self.path}: all valid. Nothing was written (--check)."
        updated = sum(1 for result in self.results if result.updated_fields)
        parts = [
            f"{self.count('created')} created",
            f"{plural(self.count('new_version'), 'new version')}",
            f"{self.count('unchanged')} unchanged",
        ]
        if self.count("kept"):
            parts.append(f"{self.count('kept')} kept (edited outside git)")
        if updated:
            parts.append(f"{updated} with name or description updated")
        if self.count("missing"):
            parts.append(f"{plural(self.count('missing'), 'agent')} without a file left unchanged")
        return f"Synced {files} from {self.path}: {', '.join(parts)}."


@dataclass(frozen=True)
class FileError:
    """A problem that names its file: `display` is how the file is shown to the reader."""

    display: str
    problem: str

    def __str__(self) -> str:
        return f"{self.display}: {self.problem}"


@dataclass(frozen=True)
class FileInput:
    """One agent file to validate, read from a folder or a commit.

    `source_path` is what a version records (relative to the folder, or to the repository
    root for git); `display` names the file in errors. `data` is None when the file could
    not be read, and `problem` then says why.
    """

    source_path: str
    display: str
    data: bytes | None
    problem: str | None = None

    @property
    def stem(self) -> str:
        return PurePosixPath(self.source_path).stem


@dataclass(frozen=True)
class Entry:
    """A file that passed validation, ready to write."""

    source_path: str
    agent_file: AgentFile
    config_hash: str
    change_description: str | None  # validated; None when the file gives none


def classify_name(relative: str) -> Literal["agent", "misnamed", "ignore"]:
    """What a file is, by its path relative to the agent folder.

    Hidden files and anything in a hidden folder are ignored (".git", editor swap files);
    `.yaml` is an agent file; `.yml` or another case of `.yaml` is an error, never skipped.
    """
    parts = PurePosixPath(relative).parts
    if any(part.startswith(".") for part in parts):
        return "ignore"
    suffix = PurePosixPath(relative).suffix
    if suffix == FILE_SUFFIX:
        return "agent"
    if suffix.lower() in (FILE_SUFFIX, *MISNAMED_SUFFIXES):
        return "misnamed"
    return "ignore"


def misnamed_problem(relative: str) -> str:
    stem = PurePosixPath(relative).stem
    return f"agent files must end in {FILE_SUFFIX!r}. Rename it to {stem + FILE_SUFFIX!r}."


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


def _read_and_validate(root: Path) -> list[Entry]:
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
    inputs = [_read_file(file, file.relative_to(root).as_posix(), root) for file in files]
    return validate_files(inputs, errors, where=f"under {root}")


def _discover(root: Path) -> tuple[list[Path], list[FileError]]:
    """The agent files under `root` in a stable order, and errors for misnamed ones."""
    found: list[Path] = []
    errors: list[FileError] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            file = Path(folder) / name
            kind = classify_name(file.relative_to(root).as_posix())
            if kind == "agent":
                found.append(file)
            elif kind == "misnamed":
                errors.append(FileError(str(file), misnamed_problem(name)))
    return sorted(found, key=lambda f: f.relative_to(root).as_posix()), errors


def _read_file(file: Path, relative: str, root: Path) -> FileInput:
    display = str(root / relative)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return FileInput(relative, display, None, too_large_problem())
        return FileInput(relative, display, file.read_bytes())
    except OSError as exc:
        return FileInput(relative, display, None, f"cannot be read: {exc.strerror or exc}.")


def too_large_problem() -> str:
    return f"is larger than {MAX_FILE_BYTES:,} bytes; this is not an agent file."


def validate_files(inputs: list[FileInput], errors: list[FileError], *, where: str) -> list[Entry]:
    """Every file validated, in order; SyncError listing every problem if any is invalid.

    `errors` holds problems already found while listing the files (misnamed ones);
    `where` completes the heading: "Nothing was written: 2 problems in 1 file <where>:".
    """
    errors = list(errors)
    entries: list[Entry] = []
    first_display_of: dict[str, str] = {}  # by file stem, which every valid file's slug equals
    for file in inputs:
        entry, problems = _validate_input(file)
        if file.stem in first_display_of:
            problems.append(
                f"slug: the agent {file.stem!r} is also defined in "
                f"{first_display_of[file.stem]}. Each agent must have exactly one file."
            )
        else:
            first_display_of[file.stem] = file.display
        if problems:
            errors.extend(FileError(file.display, problem) for problem in problems)
        elif entry is not None:
            entries.append(entry)

    if errors:
        errors.sort(key=lambda error: error.display)  # stable: a file's problems keep their order
        raise SyncError(
            [str(error) for error in errors],
            heading=(
                f"Nothing was written: {plural(len(errors), 'problem')} in "
                f"{plural(len({error.display for error in errors}), 'file')} {where}:"
            ),
        )
    return entries


def _validate_input(file: FileInput) -> tuple[Entry | None, list[str]]:
    """The validated entry, or None and every problem in the file as 'field: message'."""
    if file.data is None:
        return None, [file.problem or "cannot be read."]
    try:
        text = file.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = file.data.count(b"\n", 0, exc.start) + 1
        return None, [f"line {line}: is not UTF-8 text. Save the file as UTF-8."]

    try:
        agent_file = parse_agent_file(text, file_stem=file.stem)
    except AgentFileError as exc:
        return None, [str(problem) for problem in exc.problems]

    problems: list[str] = []
    source_path_limit = AgentVersion._meta.get_field("source_path").max_length or 0
    if len(file.source_path) > source_path_limit:
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
    change_description = None
    if agent_file.change_description is not None:
        try:
            change_description = validate_change_description(agent_file.change_description)
        except ValidationError as exc:
            problems.extend(_lines(exc))
    if problems:
        return None, problems
    return Entry(file.source_path, agent_file, config_hash(config), change_description), []


def _write(entries: list[Entry], actor: Actor) -> tuple[AgentResult, ...]:
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
        changed_fields(existing[e.agent_file.slug], e.agent_file)
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
            created = create_agent(
                slug=file.slug, name=file.name, description=file.description, actor=actor
            )
            version = _create_version(created, entry, actor)
            results.append(
                AgentResult(file.slug, entry.source_path, "created", version.version_number)
            )
            continue
        updated = update_agent_from_file(agent, file, actor, entry.source_path)
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


def _create_version(agent: Agent, entry: Entry, actor: Actor) -> AgentVersion:
    return create_version(
        agent=agent,
        actor=actor,
        config=entry.agent_file.config,
        change_description=entry.change_description or f"Imported from {entry.source_path}",
        source=Source.FILE_IMPORT,
        source_path=entry.source_path,
    )


def update_agent_from_file(
    agent: Agent, file: AgentFile, actor: Actor, source_path: str
) -> tuple[str, ...]:
    """Bring name and description in line with the file; the fields that changed."""
    return update_agent(
        agent=agent,
        actor=actor,
        name=file.name,
        description=file.description,
        reason=f"{actor.label}: from {source_path}",
    )


def changed_fields(agent: Agent, file: AgentFile) -> tuple[str, ...]:
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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
