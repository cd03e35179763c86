"""``fleet-agent enroll``: exchange a one-time enrolment code for the station token.

The token is written to ``--token-file`` with mode 0600, atomically; an existing token file
is kept unless ``--force`` (a second enrolment would otherwise silently replace a working
token). A wrong, used or expired code is one sentence and exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fleet_agent.cli.options import UsageError
from fleet_agent.fsutil import atomic_write
from fleet_agent.portal_client import (
    PortalClient,
    PortalError,
    PortalUnreachable,
    portal_url_problem,
)

EXIT_REFUSED = 1

_SENTENCES = {
    "enrollment_code_invalid": "the portal does not know this enrolment code; check what you "
    "typed (letters and digits, dashes optional).",
    "enrollment_code_used": "this enrolment code was already used; ask staff for a new one.",
    "enrollment_code_expired": "this enrolment code has expired; ask staff for a new one.",
}


def cmd_enroll(args: argparse.Namespace) -> int:
    problem = portal_url_problem(args.portal)
    if problem:
        raise UsageError(problem)
    target = Path(args.token_file)
    if target.exists() and not args.force:
        raise UsageError(
            f"the token file {target} already exists; give --force to replace it (the old "
            "token stops working once the code is used)."
        )
    if not target.parent.is_dir():
        raise UsageError(f"the folder {target.parent} of the token file does not exist.")
    client = PortalClient(args.portal, "", ca_file=args.portal_ca)
    try:
        answer = client.enroll(args.code.strip())
    except PortalError as exc:
        sentence = _SENTENCES.get(exc.code, f"the portal refused the enrolment code: {exc.detail}")
        print(f"fleet-agent: {sentence}", file=sys.stderr)
        return EXIT_REFUSED
    except PortalUnreachable as exc:
        if "429" in str(exc):
            sentence = "too many wrong enrolment codes were tried; wait a few minutes."
        else:
            sentence = f"the portal at {client.base_url} cannot be reached ({exc}); try again."
        print(f"fleet-agent: {sentence}", file=sys.stderr)
        return EXIT_REFUSED
    atomic_write(target, (answer["token"] + "\n").encode(), 0o600)
    os.chmod(target, 0o600)
    station = answer.get("station") or "?"
    print(f"enrolled as station {station}; token written to {target} (mode 0600)")
    return 0
