from typing import Any

from django.core.management.base import CommandError, CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from deployments.services.git_releases import sync_and_release
from versions.sync import sync_agents

GIT_ONLY_OPTIONS = ("path", "allow_revert", "deploy_to", "request")


class Command(ServiceCommand):
    help = (
        "Import agents from a folder of YAML files, one agent per <slug>.yaml (subfolders "
        "included; hidden files and folders skipped; a .yml file is an error, rename it to "
        ".yaml), or from a git repository at a commit (--repo, --ref, --path). Creates "
        "missing agents, updates their name and description from the file, and creates a "
        "new version only where the config changed since the agent's latest version. Every "
        "file is validated first: if any is invalid, nothing is written and every problem "
        "is listed. From git, each version records its commit; a commit older than an "
        "agent's last sync is refused unless --allow-revert (README: git as the source of truth)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "folder",
            nargs="?",
            help="the folder that holds the agent files, e.g. agents/ (or use --repo)",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="validate every file and exit; write nothing and do not use the database",
        )
        git = parser.add_argument_group("from a git repository")
        git.add_argument(
            "--repo",
            metavar="PATH_OR_URL",
            help="a local repository, or an https://, ssh:// or user@host:path URL to clone",
        )
        git.add_argument(
            "--ref",
            default="HEAD",
            help="the branch, tag or commit to read (default: HEAD); CI passes the commit SHA",
        )
        git.add_argument(
            "--path",
            default="",
            metavar="FOLDER",
            help="the folder in the repository that holds the agent files, e.g. agents/ "
            "(default: the whole repository)",
        )
        git.add_argument(
            "--allow-revert",
            action="store_true",
            help="sync even if the commit is older than an agent's last sync",
        )
        git.add_argument(
            "--deploy-to",
            metavar="ENV",
            help="deploy the new versions to this environment (one that needs no approval)",
        )
        git.add_argument(
            "--request",
            metavar="ENV",
            help="open a deployment request for each new version in this environment",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        folder, repo = options["folder"], options["repo"]
        if bool(folder) == bool(repo):
            raise CommandError(
                "give either a folder (sync_agents agents/) or a repository "
                "(sync_agents --repo . --ref main --path agents/), not both or neither."
            )
        if options["check"] and (options["deploy_to"] or options["request"]):
            raise CommandError(
                "--check writes nothing, so it cannot be combined with --deploy-to or --request."
            )
        if folder:
            used = [name for name in GIT_ONLY_OPTIONS if options[name]]
            if used:
                flags = ", ".join("--" + name.replace("_", "-") for name in used)
                raise CommandError(f"{flags}: only with --repo (a sync from git).")
            report = sync_agents(
                path=folder, actor=Actor.cli("sync_agents"), check_only=options["check"]
            )
        else:
            report = sync_and_release(
                repo=repo,
                ref=options["ref"],
                folder=options["path"],
                actor=Actor.cli("sync_agents"),
                check_only=options["check"],
                allow_revert=options["allow_revert"],
                deploy_to=options["deploy_to"],
                request_for=options["request"],
            )
        if report.heading:
            self.stdout.write(report.heading)
        for result in report.results:
            self.stdout.write(result.describe())
        for line in report.releases:
            self.stdout.write(line)
        self.stdout.write(report.summary())
