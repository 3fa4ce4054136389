"""Write agents as agent files: `export_agents(directory=...)` and `render_agent_file(version)`.

The output is exactly what `sync_agents` reads (versions.file_format.dump_agent_file):
exporting and then syncing the folder creates nothing.

Decisions:
- The file holds the agent's current name and description and the version's config.
  It has no `change_description`: in git the commit message says what changed, and a
  description left in a file would be reused for every later change to it.
- A file goes where the folder already has `<slug>.yaml` (in any subfolder, hidden ones
  excepted), so exporting into a checkout that groups agents in folders updates them in
  place; otherwise it goes to `<directory>/<slug>.yaml`.
- An unchanged file is not rewritten, so its modification time stays and `git status`
  stays quiet.

Invariants:
- Every file is complete or absent: it is written to a temporary file in the same folder
  and renamed over the old one.
- Nothing is written if any agent cannot be placed (two files with its slug).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.db.models import OuterRef, Subquery

from agentconfig.core.errors import NotFound, ServiceError
from agentconfig.models import Agent
from versions.file_format import FILE_SUFFIX, AgentFile, dump_agent_file
from versions.models import AgentVersion
from versions.selectors import list_agents
from versions.sync import classify_name


def render_agent_file(version: AgentVersion) -> str:
    """The agent file of `version`: its agent's name and description, its config."""
    agent = version.agent
    return dump_agent_file(
        AgentFile(
            slug=agent.slug, name=agent.name, description=agent.description, config=version.config
        )
    )


@dataclass(frozen=True)
class ExportedFile:
    slug: str
    version_number: int
    path: Path
    written: bool  # False: the file already had exactly this content

    def describe(self) -> str:
        state = "written" if self.written else "unchanged"
        return f"{self.slug}: v{self.version_number} -> {self.path} ({state})"


@dataclass(frozen=True)
class ExportReport:
    directory: Path
    files: tuple[ExportedFile, ...]
    skipped: tuple[str, ...]  # agents without a version to export, and why

    def summary(self) -> str:
        written = sum(1 for file in self.files if file.written)
        count = len(self.files)
        agents = f"{count} agent" if count == 1 else f"{count} agents"
        return (
            f"Exported {agents} to {self.directory}: {written} written, "
            f"{count - written} unchanged"
            + (f", {len(self.skipped)} skipped." if self.skipped else ".")
        )


def export_agents(
    *,
    directory: str | os.PathLike[str],
    agent_slug: str | None = None,
    chosen: tuple[list[AgentVersion], list[str]] | None = None,
) -> ExportReport:
    """Write the latest version of each agent (or `chosen`: the versions to write, and
    why others were skipped, e.g. the ones active in an environment) as files."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ServiceError(f"{root}: is a file. Give the folder to write the agent files into.")
    versions, skipped = chosen if chosen is not None else latest_versions(agent_slug)
    existing = _existing_files(root) if root.is_dir() else {}
    placed: list[tuple[AgentVersion, Path]] = []
    for version in versions:
        paths = existing.get(version.agent.slug, [])
        if len(paths) > 1:
            listing = ", ".join(str(path) for path in paths)
            raise ServiceError(
                f"{version.agent.slug}: {root} has several files for it ({listing}); "
                "keep one, then export again. Nothing was written."
            )
        placed.append((version, paths[0] if paths else root / f"{version.agent.slug}{FILE_SUFFIX}"))

    files = [
        ExportedFile(version.agent.slug, version.version_number, path, _write(path, version))
        for version, path in placed
    ]
    return ExportReport(root, tuple(files), tuple(skipped))


def latest_versions(agent_slug: str | None) -> tuple[list[AgentVersion], list[str]]:
    """The newest version of `agent_slug` (or of every agent), and the agents without one."""
    agents = list_agents(agent_slug)
    newest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-version_number")
    latest_ids = (
        Agent.objects.filter(pk__in=[agent.pk for agent in agents])
        .annotate(latest_id=Subquery(newest.values("pk")[:1]))
        .exclude(latest_id=None)
        .values_list("latest_id", flat=True)
    )
    latest = {
        version.agent_id: version
        for version in AgentVersion.objects.filter(pk__in=list(latest_ids)).select_related("agent")
    }
    if agent_slug and not latest:
        raise NotFound(f"{agent_slug} has no versions; nothing to export.")
    skipped = [f"{agent.slug}: no versions" for agent in agents if agent.pk not in latest]
    return [latest[agent.pk] for agent in agents if agent.pk in latest], skipped


def _existing_files(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            file = Path(folder) / name
            if classify_name(file.relative_to(root).as_posix()) == "agent":
                found.setdefault(file.stem, []).append(file)
    return found


def _write(path: Path, version: AgentVersion) -> bool:
    """Write the file unless it already holds exactly this text; whether it was written."""
    data = render_agent_file(version).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True
