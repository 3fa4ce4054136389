from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core.cli import ServiceCommand
from deployments.selectors import list_active_versions
from versions.export import export_agents


class Command(ServiceCommand):
    help = (
        "Write agents as agent files, in exactly the format sync_agents reads: the latest "
        "version of every agent, or of one (--agent), or the version active in an "
        "environment (--environment). A folder that already has <slug>.yaml somewhere "
        "(subfolders included) gets it updated in place; otherwise DIR/<slug>.yaml. The "
        "file has no change_description: in git, the commit message says what changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", metavar="DIR", help="the folder to write into")
        parser.add_argument("--agent", metavar="SLUG", help="only this agent")
        parser.add_argument(
            "--environment",
            metavar="ENV",
            help="the version active in this environment instead of the latest",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        environment = options["environment"]
        report = export_agents(
            directory=options["directory"],
            agent_slug=options["agent"],
            chosen=list_active_versions(options["agent"], environment) if environment else None,
        )
        for file in report.files:
            self.stdout.write(file.describe())
        for line in report.skipped:
            self.stdout.write(f"{line}; skipped")
        self.stdout.write(report.summary())
