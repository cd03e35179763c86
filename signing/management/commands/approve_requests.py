"""`approve_requests (--all-pending | ID …) [--wait SECONDS]`: the admin's approve action.

With ``--wait`` it returns when every approved request is issued or failed; it exits
non-zero if any failed or the wait timed out. When the task queue is unreachable the
approvals still count (exit 0, a sentence on stderr); ``--wait`` keeps waiting, since the
sweeper hands the requests to signing once the queue is back.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser

from portal.commands import PortalCommand
from portal.handoff import handoffs_reset, handoffs_tell_command
from signing.models import OnboardingRequest
from signing.services import onboarding_requests_approve


class Command(PortalCommand):
    help = "Approve pending onboarding requests (signing runs on the Celery 'signing' queue)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="ID")
        parser.add_argument("--all-pending", action="store_true")
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Wait until the approved requests are issued (or failed).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        ids: list[int] = opts["ids"]
        if bool(ids) == bool(opts["all_pending"]):
            raise CommandError("Give request ids or --all-pending (not both).")
        if ids:
            missing = set(ids) - set(
                OnboardingRequest.objects.filter(pk__in=ids).values_list("pk", flat=True)
            )
            if missing:
                raise CommandError(
                    "There is no onboarding request "
                    + ", ".join(str(i) for i in sorted(missing))
                    + "."
                )
        handoffs_reset()
        approved = onboarding_requests_approve(
            ids=None if opts["all_pending"] else ids, actor_label="approve_requests command"
        )
        noun = "request" if len(approved) == 1 else "requests"
        self.stdout.write(f"Approved {len(approved)} {noun}.")
        handoffs_tell_command(self)
        watch = approved + [i for i in ids if i not in set(approved)]
        if opts["wait"] is None or not watch:
            return
        deadline = time.monotonic() + opts["wait"]
        open_states = [OnboardingRequest.Status.APPROVED, OnboardingRequest.Status.PENDING]
        while True:
            remaining = OnboardingRequest.objects.filter(pk__in=watch, status__in=open_states)
            if not remaining.exists():
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Timed out after {opts['wait']:g} s: "
                    f"{remaining.count()} of {len(watch)} requests are not "
                    "issued yet (is a worker consuming the 'signing' queue?)."
                )
            time.sleep(0.5)
        issued = OnboardingRequest.objects.filter(
            pk__in=watch, status=OnboardingRequest.Status.ISSUED
        ).count()
        self.stdout.write(f"Issued {issued} of {len(watch)}.")
        if issued < len(watch):
            raise CommandError(
                f"{len(watch) - issued} of {len(watch)} requests failed or were "
                "rejected; see their reasons in the approval queue."
            )
