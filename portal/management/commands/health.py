"""``manage.py health``: exit 1 with sentences when beat, a worker or the broker is unhealthy.

Used by container health checks and monitoring; the admin index shows the same sentences.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import health


class Command(BaseCommand):
    help = "Report whether the broker, Celery beat and a Celery worker are alive."
    requires_system_checks: list[str] = []  # cheap enough to run every 30 s

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--component",
            choices=["all", "broker", "beat", "worker"],
            default="all",
            help="Check one component only (container health checks).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        component = options["component"]
        if component == "broker":
            problems = [p for p in [health.broker_problem()] if p]
        elif component == "beat":
            problems = [p for p in [health.beat_problem()] if p]
        elif component == "worker":
            problems = [
                p for p in [health.worker_problem(schedule=health.heartbeat_schedule())] if p
            ]
        else:
            problems = health.admin_warnings()
        if problems:
            raise CommandError(" ".join(problems))
        self.stdout.write("OK.")
