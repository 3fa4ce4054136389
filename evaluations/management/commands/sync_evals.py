from typing import Any

from django.core.management.base import CommandParser

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from evaluations.sync import sync_evals


class Command(ServiceCommand):
    help = (
        "Import evaluation suites from a folder of YAML files, one <agent-slug>.yaml per agent "
        "(or from one such file). Creates missing suites, updates their name and description, "
        "and creates a new suite version only where the cases changed since the suite's "
        "latest version. Every file is validated first: if any is invalid, nothing is written "
        "and every problem is listed with its file and field."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the folder that holds the suite files, e.g. evals/")
        parser.add_argument(
            "--check",
            action="store_true",
            help="validate every file and exit; write nothing and do not use the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_evals(
            path=options["path"], actor=Actor.cli("sync_evals"), check_only=options["check"]
        )
        for result in report.results:
            self.stdout.write(result.describe())
        self.stdout.write(report.summary())
