"""``fleet-agent run``: onboard and run the devices until stopped (SIGTERM/SIGINT)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from fleet_agent.agent import Agent, AgentFatalError
from fleet_agent.cli.options import UsageError, build_options


def cmd_run(args: argparse.Namespace) -> int:
    options = build_options(args)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {args.log_level!r}.")
    # Under systemd the journal stamps each line itself; elsewhere the line carries the time.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level, stream=sys.stderr, format=f"{stamp}%(levelname)s %(message)s")
    logging.getLogger("fleet_agent").setLevel(level)
    agent = Agent(options)

    def _on_signal(signum: int, _frame: Any) -> None:
        agent.stop(timeout=0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        return agent.run()
    except AgentFatalError as exc:
        print(f"fleet-agent: {exc}", file=sys.stderr)
        return exc.exit_code
