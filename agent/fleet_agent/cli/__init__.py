"""``fleet-agent`` command line: run, status, reset, enroll.

Exit codes: 0 success, 1 goal not reached (``--once`` onboarding failed, ``--timeout``,
an enrolment code refused), 2 bad usage or configuration, 3 the portal refused the station
token, 4 corrupt state. Every failure prints one sentence on stderr; secrets are read from
files, never argv (an enrolment code is short-lived and single use, so it may be typed).
Each command lives in its own module and is imported only when it runs.
"""

from __future__ import annotations

import argparse
import sys

from fleet_agent import __version__
from fleet_agent.cli.options import HELP, RUN_OPTIONS, UsageError, metavar
from fleet_agent.state import CorruptStateError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-agent", description="Station agent.")
    parser.add_argument("--version", action="version", version=f"fleet-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="onboard and run the configured MQTT devices")
    run.add_argument("--config", metavar="FILE", help="JSON file whose keys are long option names")
    for dest, (typ, _default) in RUN_OPTIONS.items():
        flag = "--" + dest.replace("_", "-")
        if typ is bool:
            run.add_argument(flag, action="store_true", default=None, help=HELP[dest])
        else:
            run.add_argument(
                flag, type=typ, default=None, help=HELP[dest], metavar=metavar(dest, typ)
            )

    status = sub.add_parser("status", help="print each device's state")
    status.add_argument("--state-dir", required=True, metavar="DIR")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    reset = sub.add_parser("reset", help="forget certificates so the next run onboards again")
    reset.add_argument("--state-dir", required=True, metavar="DIR")
    reset.add_argument("--device", metavar="NAME", help="only this device (default: all)")
    reset.add_argument(
        "--discard-corrupt",
        action="store_true",
        help="move a corrupt state.json aside instead of failing",
    )

    enroll = sub.add_parser(
        "enroll", help="exchange a one-time enrolment code for the station token file"
    )
    enroll.add_argument("--portal", required=True, metavar="URL", help=HELP["portal"])
    enroll.add_argument("--code", required=True, metavar="CODE", help="the code staff gave you")
    enroll.add_argument(
        "--token-file", required=True, metavar="FILE", help="where to write the token (0600)"
    )
    enroll.add_argument("--portal-ca", metavar="FILE", help=HELP["portal_ca"])
    enroll.add_argument("--force", action="store_true", help="replace an existing token file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        # Import only the command that runs: `status` and `enroll` stay small and quick.
        if args.command == "run":
            from fleet_agent.cli.run import cmd_run

            return cmd_run(args)
        if args.command == "status":
            from fleet_agent.cli.status import cmd_status

            return cmd_status(args)
        if args.command == "enroll":
            from fleet_agent.cli.enroll import cmd_enroll

            return cmd_enroll(args)
        from fleet_agent.cli.reset import cmd_reset

        return cmd_reset(args)
    except UsageError as exc:
        print(f"fleet-agent: {exc}", file=sys.stderr)
        return 2
    except CorruptStateError as exc:
        print(f"fleet-agent: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
