"""Decommissioning a station: every certificate of its devices revoked (cessationOfOperation)
and detached in AWS, optionally its things deleted, its token invalidated; the station row,
its devices and the audit trail stay.

``station_decommission(dry_run=True)`` returns the same plan and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from devices.models import MqttDevice, Station
from devices.services import station_token_invalidate
from portal.services import Actor, audit_record
from signing.models import IssuedCertificate
from signing.services import certificate_revoke

from .models import AwsAction
from .revocation import certificate_aws_id, open_revocation_actions
from .services import Change, aws_actions_enqueue

Kind = AwsAction.Kind
DECOMMISSION_REASON = "cessationOfOperation"


@dataclass
class DecommissionPlan:
    """What decommissioning a station changes (or, in a dry run, would change)."""

    station: Station
    revoke: list[IssuedCertificate] = field(default_factory=list)
    detach: list[IssuedCertificate] = field(default_factory=list)
    things: list[str] = field(default_factory=list)
    dry_run: bool = False
    actions: list[AwsAction] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One sentence per change, in the order they are made."""
        out = [
            f"Revoke certificate {c.common_name} (serial {c.serial}, {DECOMMISSION_REASON}) "
            "in the portal and in AWS."
            for c in self.revoke
        ]
        out += [
            f"Detach certificate {c.common_name} (serial {c.serial}) from its thing and "
            "policies in AWS."
            for c in self.detach
        ]
        out += [f"Delete thing {name} in AWS." for name in self.things]
        out.append(f"Invalidate the API token of station {self.station.name}.")
        return out


def station_decommission_plan(*, station: Station, delete_things: bool) -> DecommissionPlan:
    """The plan of :func:`station_decommission`, read-only."""
    certificates = list(
        IssuedCertificate.objects.filter(device__station=station).order_by("device__name", "id")
    )
    plan = DecommissionPlan(station=station)
    plan.revoke = [c for c in certificates if c.status != IssuedCertificate.Status.REVOKED]
    plan.detach = certificates
    if delete_things:
        names: set[str] = {c.common_name for c in certificates if c.common_name}
        names |= {
            name
            for name in MqttDevice.objects.filter(station=station).values_list(
                "client_id", flat=True
            )
            if name
        }
        plan.things = sorted(names)
    return plan


def station_decommission(
    *,
    station: Station,
    delete_things: bool = False,
    dry_run: bool = False,
    actor: Actor = None,
    actor_label: str = "",
) -> DecommissionPlan:
    """Decommission ``station`` (see the module docstring); all or nothing.

    Idempotent: a second run revokes nothing more, records the detaches again (harmless in
    AWS) and gives the station yet another unknown token.
    """
    plan = station_decommission_plan(station=station, delete_things=delete_things)
    plan.dry_run = dry_run
    if dry_run:
        return plan
    with transaction.atomic():
        station = Station.objects.select_for_update().get(pk=station.pk)
        plan.station = station
        for cert in plan.revoke:
            # The certificate_revoked receiver records REVOKE and DETACH_POLICIES.
            certificate_revoke(
                certificate=cert,
                reason=DECOMMISSION_REASON,
                comment=f"Station {station.name} decommissioned.",
                actor=actor,
                actor_label=actor_label,
            )
            plan.actions += open_revocation_actions(cert)
        changes = []
        for cert in plan.detach:
            cert_id = certificate_aws_id(cert)
            changes.append(Change(Kind.DETACH_THING, certificate=cert, aws_certificate_id=cert_id))
            changes.append(
                Change(Kind.DETACH_POLICIES, certificate=cert, aws_certificate_id=cert_id)
            )
        changes += [Change(Kind.DELETE_THING, thing_name=name) for name in plan.things]
        reason = f"Station {station.name} decommissioned."
        enqueued = aws_actions_enqueue(
            changes=changes, reason=reason, actor=actor, actor_label=actor_label
        )
        known = {a.pk for a in plan.actions}
        plan.actions += [a for a in enqueued if a.pk not in known]
        station_token_invalidate(station=station, actor=actor, reason=reason)
        audit_record(
            action="station_decommission",
            obj=station,
            actor=actor,
            actor_label=actor_label,
            detail={
                "revoked": [c.serial for c in plan.revoke],
                "things_deleted": plan.things,
                "actions": [a.pk for a in plan.actions],
            },
        )
    return plan
