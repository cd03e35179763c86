"""Revocation reaching AWS and decommissioning a station: reasons, idempotence, the doors
(command, staff API, admin), dry runs that write nothing, and AWS's side (a moto server)."""

# ruff: noqa: F811 - the fixtures imported from test_lifecycle_outbox are used by name
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from devices.models import MqttDevice, Station
from devices.selectors import station_for_token
from devices.station_services import station_state_record
from portal.celery import app
from portal.models import AuditEvent
from portal.services import api_token_create
from provisioning.lifecycle import AwsAction, aws_actions_run
from provisioning.lifecycle.decommission import station_decommission
from provisioning.lifecycle.revocation import (
    RevocationWaitFailed,
    certificates_for_revocation,
    certificates_revoke_in_aws,
    revocation_wait,
)
from signing.errors import InvalidRevocationReason
from signing.models import IssuedCertificate
from signing.services import certificate_revoke, revocation_reason_parse
from tests.provisioning.connection_fixtures import Api
from tests.provisioning.test_lifecycle_outbox import (  # noqa: F401 - fixtures used by name
    der_certificate_ids,
    in_aws,
    issued,
)

Kind = AwsAction.Kind


def _kinds() -> list[str]:
    return list(AwsAction.objects.order_by("id").values_list("kind", flat=True))


def _device(cert: IssuedCertificate) -> MqttDevice:
    return MqttDevice.objects.get(pk=cert.device_id)


def _current(cert: IssuedCertificate) -> None:
    MqttDevice.objects.filter(pk=cert.device_id).update(current_certificate=cert)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("keyCompromise", "keyCompromise"),
        ("key_compromise", "keyCompromise"),
        ("CESSATIONOFOPERATION", "cessationOfOperation"),
        ("cACompromise", "cACompromise"),
        ("superseded", "superseded"),
    ],
)
def test_rfc_5280_reason_names_are_accepted(given: str, name: str) -> None:
    assert revocation_reason_parse(given) == name


@pytest.mark.parametrize("reason", ["", "stolen", "certificateHold", "removeFromCRL"])
def test_other_reasons_are_refused_with_a_sentence_and_nothing_written(issued, reason) -> None:  # noqa: ANN001
    with pytest.raises(InvalidRevocationReason) as exc:
        certificate_revoke(certificate=issued, reason=reason)
    assert "keyCompromise, cACompromise" in exc.value.detail
    assert exc.value.detail.endswith(".")
    issued.refresh_from_db()
    assert issued.status == "active"
    assert not AwsAction.objects.exists()
    assert not AuditEvent.objects.filter(action="certificate_revoke").exists()


def test_revoke_records_the_aws_actions_and_the_device_shows_revoked(issued, settings) -> None:  # noqa: ANN001
    settings.AWS_QUARANTINE_THING_GROUP = "quarantine"
    _current(issued)
    certificate_revoke(certificate=issued, reason="keyCompromise", comment="Controller stolen.")
    issued.refresh_from_db()
    assert (issued.status, issued.revocation_reason, issued.revocation_comment) == (
        "revoked",
        "keyCompromise",
        "Controller stolen.",
    )
    assert _kinds() == [Kind.REVOKE, Kind.DETACH_POLICIES, Kind.MOVE_TO_GROUP]
    move = AwsAction.objects.get(kind=Kind.MOVE_TO_GROUP)
    assert (move.thing_name, move.group_name) == (issued.common_name, "quarantine")
    assert _device(issued).status == MqttDevice.Status.REVOKED
    # The agent's reports do not make it look healthy again ...
    report = {"agent_version": "1", "devices": [{"name": "dev", "status": "error"}]}
    station_state_record(station=_device(issued).station, report=report)
    assert _device(issued).status == MqttDevice.Status.REVOKED
    # ... until it asks for a new certificate (a new onboarding request).
    report["devices"][0]["status"] = "awaiting_approval"
    station_state_record(station=_device(issued).station, report=report)
    assert _device(issued).status == MqttDevice.Status.AWAITING_APPROVAL


def test_the_agent_config_reports_the_revoked_certificate(issued) -> None:  # noqa: ANN001
    from provisioning.fleet.agent_config import station_agent_config_with_etag

    _current(issued)
    device = _device(issued)

    def entry() -> tuple[dict, str]:
        config, etag, _ = station_agent_config_with_etag(device.station)
        return next(d for d in config["devices"] if d["name"] == device.name), etag

    before, etag = entry()
    assert (before["certificate_serial"], before["certificate_status"]) == (issued.serial, "active")
    certificate_revoke(certificate=issued, reason="keyCompromise")
    after, etag_after = entry()
    assert (after["certificate_serial"], after["certificate_status"]) == (issued.serial, "revoked")
    assert etag_after != etag  # the agent's next poll brings it


def test_revoke_is_idempotent(issued) -> None:  # noqa: ANN001
    first = certificate_revoke(certificate=issued, reason="keyCompromise")
    again = certificate_revoke(certificate=issued, reason="superseded")
    assert (again.revoked_at, again.revocation_reason) == (first.revoked_at, "keyCompromise")
    assert _kinds() == [Kind.REVOKE, Kind.DETACH_POLICIES]
    assert AuditEvent.objects.filter(action="certificate_revoke").count() == 1
    # The staff doors' service: open actions are not doubled either.
    result = certificates_revoke_in_aws(certificates=[issued], reason="keyCompromise")
    assert (result.revoked, len(result.already)) == ([], 1)
    assert _kinds() == [Kind.REVOKE, Kind.DETACH_POLICIES]


def test_revocation_reaches_aws(in_aws, issued, settings) -> None:  # noqa: ANN001
    settings.AWS_QUARANTINE_THING_GROUP = "quarantine"
    iot, arn = in_aws
    certificates_revoke_in_aws(certificates=[issued], reason="keyCompromise")
    result = aws_actions_run()
    assert (result.done, result.failed) == (3, 0)
    desc = iot.describe_certificate(certificateId=issued.aws_certificate_id)
    assert desc["certificateDescription"]["status"] == "REVOKED"
    assert iot.list_attached_policies(target=arn)["policies"] == []
    things = iot.list_things_in_thing_group(thingGroupName="quarantine")["things"]
    assert things == [issued.common_name]


def test_certificates_are_found_by_serial_with_or_without_colons_and_by_device(issued) -> None:  # noqa: ANN001
    plain = issued.serial.replace(":", "").lower()
    assert certificates_for_revocation(serials=[plain]) == [issued]
    assert certificates_for_revocation(serials=[issued.serial]) == [issued]
    assert certificates_for_revocation(devices=["st-outbox/dev"]) == [issued]
    with pytest.raises(CommandError, match=r"There is no serial 0A, no device st-outbox/nope\."):
        call_command(
            "revoke_certificates",
            "--serial",
            "0A",
            "--device",
            "st-outbox/nope",
            "--reason",
            "keyCompromise",
        )


# `revoke_certificates` for the fixtures' device, key compromise.
REVOKE_THE_DEVICE = ("--device", "st-outbox/dev", "--reason", "keyCompromise")


def test_revoke_command_refuses_a_reason_and_times_out_with_a_sentence(issued, capsys) -> None:  # noqa: ANN001
    with pytest.raises(CommandError, match="not an RFC 5280 revocation reason"):
        call_command("revoke_certificates", "--device", "st-outbox/dev", "--reason", "stolen")
    assert IssuedCertificate.objects.get().status == "active"
    # No worker carries the actions out here: --wait gives up with a sentence.
    with pytest.raises(CommandError, match=r"Timed out after 1 s: AWS does not show"):
        call_command("revoke_certificates", *REVOKE_THE_DEVICE, "--wait", "1")
    assert f"Revoked {issued.common_name}" in capsys.readouterr().out


def test_waiting_for_aws_reports_a_failed_action(issued) -> None:  # noqa: ANN001
    result = certificates_revoke_in_aws(certificates=[issued], reason="keyCompromise")
    AwsAction.objects.filter(kind=Kind.REVOKE).update(
        status=AwsAction.Status.FAILED, last_error="AWS answered AccessDeniedException: no."
    )
    with pytest.raises(RevocationWaitFailed, match="failed: AWS answered AccessDeniedException"):
        revocation_wait(
            certificates=result.certificates,
            action_ids=result.action_ids,
            timeout=5,
            describe=lambda _id: "ACTIVE",
        )
    # A certificate AWS never saw (the device never connected) counts as done.
    AwsAction.objects.update(status=AwsAction.Status.DONE)
    revocation_wait(
        certificates=result.certificates,
        action_ids=result.action_ids,
        timeout=5,
        describe=lambda _id: None,
    )


@pytest.mark.django_db(transaction=True)
def test_revoke_command_waits_until_aws_shows_revoked(in_aws, issued, monkeypatch, capsys) -> None:  # noqa: ANN001
    # The enqueue wakes the runner on commit; eager, it runs in this process against moto.
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    call_command("revoke_certificates", *REVOKE_THE_DEVICE, "--wait", "20")
    iot, _ = in_aws
    desc = iot.describe_certificate(certificateId=issued.aws_certificate_id)
    assert desc["certificateDescription"]["status"] == "REVOKED"
    assert "AWS shows 1 certificate(s) REVOKED." in capsys.readouterr().out


def test_api_needs_the_revoke_permission(issued, staff_user, superuser) -> None:  # noqa: ANN001
    url = f"/certificates/{issued.serial}/revoke"
    refused = Api(api_token_create(username=staff_user.username)[1])(
        "POST", url, {"reason": "keyCompromise"}
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "code": "permission_denied",
        "detail": "Revoking needs the permission signing.revoke_issuedcertificate.",
    }
    assert IssuedCertificate.objects.get().status == "active"
    admin_api = Api(api_token_create(username=superuser.username)[1])
    bad = admin_api("POST", url, {"reason": "stolen"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_revocation_reason")
    missing = admin_api("POST", "/certificates/0A/revoke", {"reason": "keyCompromise"})
    assert missing.status_code == 404
    done = admin_api("POST", url, {"reason": "keyCompromise", "comment": "Stolen."})
    assert done.status_code == 202
    body = done.json()
    assert (body["status"], body["reason"], body["already_revoked"]) == (
        "revoked",
        "keyCompromise",
        False,
    )
    ids = set(AwsAction.objects.values_list("id", flat=True))
    assert {a["id"] for a in body["actions"]} == ids
    assert [a["kind"] for a in body["actions"]] == [Kind.REVOKE, Kind.DETACH_POLICIES]


def test_admin_revoke_action_offers_the_rfc_reasons(client, superuser, issued) -> None:  # noqa: ANN001
    client.force_login(superuser)
    changelist = reverse("admin:signing_issuedcertificate_changelist")
    page = client.post(changelist, {"action": "revoke_selected", "_selected_action": [issued.pk]})
    assert b'<option value="cessationOfOperation">' in page.content
    assert b"certificateHold" not in page.content
    client.post(
        changelist,
        {
            "action": "revoke_selected",
            "_selected_action": [issued.pk],
            "apply": "1",
            "reason": "cessationOfOperation",
        },
    )
    assert _kinds() == [Kind.REVOKE, Kind.DETACH_POLICIES]


def _snapshot(station: Station) -> tuple:
    return (
        AuditEvent.objects.count(),
        AwsAction.objects.count(),
        list(IssuedCertificate.objects.values_list("status", flat=True)),
        Station.objects.get(pk=station.pk).token_hash,
    )


def test_decommission_dry_run_writes_nothing_and_lists_the_changes(issued, capsys) -> None:  # noqa: ANN001
    station = _device(issued).station
    before = _snapshot(station)
    call_command("decommission_station", station.name, "--delete-things", "--dry-run")
    out = capsys.readouterr().out
    assert _snapshot(station) == before
    assert out.splitlines() == [
        f"Would: Revoke certificate {issued.common_name} (serial {issued.serial}, "
        "cessationOfOperation) in the portal and in AWS.",
        f"Would: Detach certificate {issued.common_name} (serial {issued.serial}) from its "
        "thing and policies in AWS.",
        f"Would: Delete thing {issued.common_name} in AWS.",
        f"Would: Invalidate the API token of station {station.name}.",
        "Dry run: nothing was changed.",
    ]


def test_decommission_revokes_detaches_and_the_token_stops_working(in_aws, issued) -> None:  # noqa: ANN001
    iot, arn = in_aws
    station = _device(issued).station
    _, station_token = _station_with_token(station)
    assert station_for_token(station_token) == station
    plan = station_decommission(station=station, delete_things=True)
    assert station_for_token(station_token) is None
    issued.refresh_from_db()
    assert (issued.status, issued.revocation_reason) == ("revoked", "cessationOfOperation")
    assert sorted(_kinds()) == sorted(
        [Kind.REVOKE, Kind.DETACH_POLICIES, Kind.DETACH_THING, Kind.DELETE_THING]
    )
    assert {a.pk for a in plan.actions} == set(AwsAction.objects.values_list("pk", flat=True))
    assert Station.objects.filter(pk=station.pk).exists()
    event = AuditEvent.objects.get(action="station_decommission")
    assert event.detail["revoked"] == [issued.serial]
    assert AuditEvent.objects.filter(action="station_token_invalidate").exists()
    assert station_token not in str(list(AuditEvent.objects.values_list("detail", flat=True)))
    assert aws_actions_run().failed == 0
    desc = iot.describe_certificate(certificateId=issued.aws_certificate_id)
    assert desc["certificateDescription"]["status"] == "REVOKED"
    assert iot.list_principal_things(principal=arn)["things"] == []
    assert iot.list_things()["things"] == []
    # The agent's token is refused by the station API now.
    response = Api(station_token)("GET", "/agent/config")
    assert response.status_code == 401


def _station_with_token(station: Station) -> tuple[Station, str]:
    from devices.services import station_rotate_token

    return station, station_rotate_token(station=station)


def test_decommission_admin_action_confirms_how_many_and_which(client, superuser, issued) -> None:  # noqa: ANN001
    station = _device(issued).station
    client.force_login(superuser)
    changelist = reverse("admin:devices_station_changelist")
    before = _snapshot(station)
    page = client.post(
        changelist, {"action": "decommission_stations", "_selected_action": [station.pk]}
    )
    text = page.content.decode()
    assert "Decommissioning 1 station" in text
    assert "revokes 1 certificate" in text
    assert f"Revoke certificate {issued.common_name}" in text
    assert _snapshot(station) == before
    done = client.post(
        changelist,
        {"action": "decommission_stations", "_selected_action": [station.pk], "apply": "1"},
        follow=True,
    )
    assert "Decommissioned 1 station" in done.content.decode()
    issued.refresh_from_db()
    assert issued.status == "revoked"
    assert Station.objects.get(pk=station.pk).token_hash != before[3]


def test_decommission_admin_action_needs_the_revoke_permission(client, staff_user, issued) -> None:  # noqa: ANN001
    from django.contrib.auth.models import Permission

    staff_user.user_permissions.add(*Permission.objects.filter(codename__endswith="_station"))
    client.force_login(staff_user)
    page = client.get(reverse("admin:devices_station_changelist"))
    assert page.status_code == 200
    assert b"decommission_stations" not in page.content
