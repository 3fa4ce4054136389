import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, close_old_connections

from agentconfig.core.cli import ServiceCommand
from deployments.services.canaries import (
    evaluate_running_canaries,
    prune_outcome_event_ids,
    prune_outcome_latencies,
)


class Command(ServiceCommand):
    help = "Evaluate every running canary: promote, advance, hold or roll back. Loops by default."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
        parser.add_argument("--once", action="store_true", help="one round, then exit (cron)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        while True:
            self._round()
            if options["once"]:
                return
            # Between rounds, drop a connection the database may have closed meanwhile.
            close_old_connections()
            time.sleep(options["interval"])

    def _round(self) -> None:
        try:
            decisions = evaluate_running_canaries()
            prune_outcome_event_ids()
            prune_outcome_latencies()
        except DatabaseError as exc:
            # A watcher must survive a database restart; the next round tries again.
            self.stderr.write(f"database error, retrying next round: {exc}")
            return
        for decision in decisions:
            rollout = decision.rollout
            self.stdout.write(
                f"{rollout.agent.slug}@{rollout.environment.slug}: {decision.verdict} — "
                f"{decision.explanation}"
            )
        if not decisions:
            self.stdout.write("no running canaries")
