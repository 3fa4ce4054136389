from typing import Any

from django.core.management.base import CommandParser

from agentconfig.actors import Actor
from agentconfig.cli import ServiceCommand
from versions.sync import sync_agents


class Command(ServiceCommand):
    help = (
        "Import agents from a folder of YAML files, one agent per <slug>.yaml (subfolders "
        "included; hidden files and folders skipped; a .yml file is an error, rename it to "
        ".yaml). Creates missing agents, updates their name and description from the file, "
        "and creates a new version only where the config changed since the agent's latest "
        "version. Every file is validated first: if any is invalid, nothing is written and "
        "every problem is listed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the folder that holds the agent files, e.g. agents/")
        parser.add_argument(
            "--check",
            action="store_true",
            help="validate every file and exit; write nothing and do not use the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_agents(
            path=options["path"], actor=Actor.cli("sync_agents"), check_only=options["check"]
        )
        for result in report.results:
            self.stdout.write(result.describe())
        self.stdout.write(report.summary())
