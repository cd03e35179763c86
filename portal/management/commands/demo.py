"""``manage.py demo``: the whole product on one machine (see docs/demo.md).

The local AWS stand-in, the portal (web, Celery worker, beat) and N simulated stations running
the real agent; ``--scripted`` also performs staff's steps and exits 0 once every station's
device is connected.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.demo import DemoOptions, run_demo


class Command(BaseCommand):
    help = (
        "Run the local AWS stand-in, the web server, a Celery worker, beat and N simulated "
        "stations until Ctrl-C (the superuser 'admin' gets a fresh printed password); "
        "--scripted performs the onboarding steps itself and exits when all are connected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stations",
            type=int,
            default=5,
            help="Simulated stations, each running the real agent (default 5).",
        )
        parser.add_argument(
            "--scripted",
            action="store_true",
            help="Set up JITP, a signing profile, install and approve by itself; "
            "exit 0 when every station is connected.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=300.0,
            help="Scripted mode: give up after this many seconds (default 300).",
        )
        parser.add_argument(
            "--keep-running",
            action="store_true",
            help="Scripted mode: keep everything running after success until Ctrl-C.",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=8000, help="Web server port; 0 picks a free one."
        )
        parser.add_argument(
            "--broker",
            default="embedded",
            help="Broker behind the stand-in: HOST:PORT of a plain MQTT broker "
            "(e.g. Mosquitto at 127.0.0.1:1883) or 'embedded' (default).",
        )
        parser.add_argument(
            "--mqtt-port",
            type=int,
            default=None,
            help="The stand-in's MQTT/TLS port (default 8883 when free, else a "
            "free one; scripted: a free one).",
        )
        parser.add_argument(
            "--station-prefix",
            default="demo-st-",
            help="Station names are PREFIX001, PREFIX002, … (default demo-st-).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["stations"] < 0:
            raise CommandError("--stations must be 0 or more.")
        if not 0 <= options["port"] <= 65535:
            raise CommandError("--port must be between 0 and 65535.")
        if options["mqtt_port"] is not None and not 0 <= options["mqtt_port"] <= 65535:
            raise CommandError("--mqtt-port must be between 0 and 65535.")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        if options["scripted"] and options["stations"] < 1:
            raise CommandError("--scripted needs at least one station (--stations 1 or more).")
        broker = options["broker"]
        match = re.fullmatch(r"(.+):(\d{1,5})", broker)
        if broker != "embedded" and not (match and 0 < int(match.group(2)) < 65536):
            raise CommandError(f"--broker must be HOST:PORT or 'embedded', not {broker!r}.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,50}", options["station_prefix"]):
            raise CommandError(
                "--station-prefix must be letters, digits, '-' or '_' (at most "
                "51 characters, starting with a letter or digit)."
            )

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        def error(line: str) -> None:
            self.stderr.write(line)
            self.stderr.flush()

        code = run_demo(
            write=write,
            error=error,
            options=DemoOptions(
                host=options["host"],
                port=options["port"],
                stations=options["stations"],
                scripted=options["scripted"],
                timeout=options["timeout"],
                broker=broker,
                mqtt_port=options["mqtt_port"],
                station_prefix=options["station_prefix"],
                keep_running=options["keep_running"],
            ),
        )
        if code:
            sys.exit(code)
