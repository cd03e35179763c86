"""``manage.py demo``: run the portal, a Celery worker and beat on the embedded defaults."""
from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.demo import run_demo


class Command(BaseCommand):
    help = (
        "Migrate, create the superuser 'admin' with a fresh password, and run the web server, "
        "a Celery worker and beat until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stations", type=int, default=5,
                            help="Simulated stations (used once station simulation exists).")
        parser.add_argument("--scripted", action="store_true",
                            help="Run the whole chain by itself and exit (not yet available).")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000,
                            help="Web server port; 0 picks a free one.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["scripted"]:
            raise CommandError("The scripted demo is not yet available in this version.")
        if options["stations"] < 0:
            raise CommandError("--stations must be 0 or more.")
        if not 0 <= options["port"] <= 65535:
            raise CommandError("--port must be between 0 and 65535.")

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        code = run_demo(host=options["host"], port=options["port"], write=write)
        if code:
            sys.exit(code)
