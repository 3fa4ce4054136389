"""A sync from git that also releases what it created: `sync_agents --deploy-to/--request`.

Invariants:
- The environments are checked before the repository is read: an unknown one, or one
  named twice, or --deploy-to an environment that needs approval, is refused at once.
- Versions, deploys and requests are written in one transaction (the sync's): if
  deploying or requesting one new version fails, nothing is written, so re-running the
  same sync after fixing the cause does the whole job.
- Deploys and requests go through deployments.services (releases, requests) with the
  person's own permissions and a reason naming the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from django.core.exceptions import ValidationError

from agentconfig.core.actors import Actor
from agentconfig.core.errors import ServiceError
from agentconfig.core.reasons import MAX_REASON
from deployments.models import Environment
from deployments.selectors import get_environment
from deployments.services.releases import deploy_version
from deployments.services.requests import create_request
from versions.git_source import Commit
from versions.git_sync import sync_agents_from_git
from versions.models import AgentVersion
from versions.sync import SyncError, SyncReport


def sync_and_release(
    *,
    repo: str,
    ref: str,
    folder: str = "",
    actor: Actor,
    check_only: bool = False,
    allow_revert: bool = False,
    deploy_to: str | None = None,
    request_for: str | None = None,
) -> SyncReport:
    """Sync the agent files under `folder` of `repo` at `ref`; deploy or request new versions."""
    targets = None if check_only else _release_targets(deploy_to, request_for)
    release = None
    if targets is not None and (targets.deploy_to or targets.request_for):
        release = partial(_release, targets, actor)
    return sync_agents_from_git(
        repo=repo,
        ref=ref,
        folder=folder,
        actor=actor,
        check_only=check_only,
        allow_revert=allow_revert,
        release=release,
    )


@dataclass(frozen=True)
class _Targets:
    deploy_to: Environment | None
    request_for: Environment | None


def _release_targets(deploy_to: str | None, request_for: str | None) -> _Targets:
    """The environments to deploy to and request for, checked before anything is read."""
    if deploy_to and deploy_to == request_for:
        raise ServiceError(
            f"--deploy-to and --request both name {deploy_to}: an environment is either "
            "deployed to directly or through a request, not both."
        )
    deploy_env = get_environment(deploy_to) if deploy_to else None
    if deploy_env is not None and deploy_env.requires_approval:
        raise ServiceError(
            f"{deploy_env.slug} requires approval before a deploy, so --deploy-to "
            f"{deploy_env.slug} cannot deploy there. Use --request {deploy_env.slug} to open "
            "deployment requests instead."
        )
    request_env = get_environment(request_for) if request_for else None
    return _Targets(deploy_env, request_env)


def _release(
    targets: _Targets, actor: Actor, created: list[AgentVersion], commit: Commit
) -> tuple[str, ...]:
    """Deploy, or open a request for, every version this sync created."""
    reason = f"Synced from git commit {commit.sha}: {commit.subject}"[:MAX_REASON]
    lines: list[str] = []
    for version in created:
        where = f"{version.agent.slug} {version.label}"
        try:
            if targets.deploy_to is not None:
                deploy_version(
                    agent=version.agent,
                    environment=targets.deploy_to,
                    version=version,
                    actor=actor,
                    reason=reason,
                )
                lines.append(f"Deployed {where} to {targets.deploy_to.slug}.")
            if targets.request_for is not None:
                create_request(
                    agent=version.agent,
                    environment=targets.request_for,
                    version=version,
                    actor=actor,
                    reason=reason,
                )
                lines.append(
                    f"Requested a deploy of {where} to {targets.request_for.slug} "
                    "(waiting for approval)."
                )
        except ValidationError as exc:
            raise SyncError(
                [f"{where}: {'; '.join(exc.messages)}"], heading=_RELEASE_HEADING
            ) from None
        except ServiceError as exc:
            raise SyncError([f"{where}: {exc.message}"], heading=_RELEASE_HEADING) from None
    if not created:
        lines.append("No new versions: nothing to deploy or request.")
    return tuple(lines)


_RELEASE_HEADING = (
    "Nothing was written: a new version could not be deployed or requested, and the sync "
    "is all or nothing (re-run it once this is resolved):"
)
