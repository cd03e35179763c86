"""Writes about stations beyond create/rotate: edits, CSV import and recording the agent's
state reports on the station's rows (fleet installs follow the reports in provisioning)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal.errors import InvalidInput
from portal.services import Actor, audit_record

from .models import MqttDevice, Station
from .services import station_create

CSV_MAX_ROWS = 5000
CSV_COLUMNS = ("name", "description", "site", "tags")


def _parse_tags(raw: str) -> list[str]:
    return [t.strip() for t in raw.replace(",", ";").split(";") if t.strip()]


@transaction.atomic
def station_update(
    *,
    station: Station,
    description: str | None = None,
    site: str | None = None,
    tags: list[str] | None = None,
    actor: Actor = None,
) -> Station:
    """Change a station's descriptive fields (never its name or token)."""
    if description is not None:
        station.description = description
    if site is not None:
        station.site = site.strip()
    if tags is not None:
        station.tags = [str(t).strip() for t in tags if str(t).strip()]
    station.full_clean()
    station.save(update_fields=["description", "site", "tags"])
    audit_record(action="station_update", obj=station, actor=actor)
    return station


class CsvImportError(InvalidInput):
    """The CSV import was refused; ``errors`` holds one sentence per bad row."""

    code = "invalid_csv"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"The CSV file has {len(errors)} error(s); nothing was imported.")
        self.errors = errors


def _validation_sentences(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def stations_import_csv(*, data: bytes | str, actor: Actor = None) -> list[tuple[Station, str]]:
    """Create stations from CSV (header: name[,description,site,tags]); all or nothing.

    Returns each new station with its token, which the caller shows once. Raises
    CsvImportError listing every bad row (line numbers as in the file).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CsvImportError(["The file is not UTF-8 text."]) from None
    reader = csv.DictReader(io.StringIO(data))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header:
        raise CsvImportError(["The first line must be a header with at least a 'name' column."])
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise CsvImportError(
            [f"Unknown column(s): {', '.join(unknown)}; use {', '.join(CSV_COLUMNS)}."]
        )
    reader.fieldnames = header
    errors: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if len(rows) >= CSV_MAX_ROWS:
            raise CsvImportError([f"The file has more than {CSV_MAX_ROWS} rows; split it."])
        if None in row:
            errors.append(f"Line {line}: more fields than columns in the header.")
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue
        name = values.get("name", "")
        if not name:
            errors.append(f"Line {line}: the name is empty.")
            continue
        if name in seen:
            errors.append(f"Line {line}: station '{name}' already appears on line {seen[name]}.")
            continue
        seen[name] = line
        rows.append((line, values))
    if not rows and not errors:
        raise CsvImportError(["The file has no stations in it."])
    existing = set(Station.objects.filter(name__in=list(seen)).values_list("name", flat=True))
    for line, values in rows:
        if values["name"] in existing:
            errors.append(f"Line {line}: a station named '{values['name']}' already exists.")
            continue
        probe = Station(
            name=values["name"],
            description=values.get("description", ""),
            site=values.get("site", ""),
            tags=_parse_tags(values.get("tags", "")),
            token_hash="x" * 64,
            token_prefix="x",
        )
        try:
            probe.full_clean(validate_unique=False)
        except ValidationError as exc:
            errors.append(f"Line {line}: {_validation_sentences(exc)}")
    if errors:
        raise CsvImportError(errors)
    created: list[tuple[Station, str]] = []
    with transaction.atomic():
        for _line, values in rows:
            station, token = station_create(
                name=values["name"], description=values.get("description", ""), actor=actor
            )
            station_update(
                station=station,
                site=values.get("site", ""),
                tags=_parse_tags(values.get("tags", "")),
                actor=actor,
            )
            created.append((station, token))
    return created


# Agent status -> MqttDevice status (the agent never reports "pending install").
_AGENT_STATUS = {
    "installed": MqttDevice.Status.INSTALLED,
    "onboarding": MqttDevice.Status.ONBOARDING,
    "awaiting_approval": MqttDevice.Status.AWAITING_APPROVAL,
    "certificate_issued": MqttDevice.Status.CERTIFICATE_ISSUED,
    "connected": MqttDevice.Status.CONNECTED,
    "error": MqttDevice.Status.ERROR,
}


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _seen_recently(station: Station, now: datetime) -> bool:
    """True when the stored "last seen" is fresh enough not to be rewritten by itself."""
    seen = station.last_seen_at
    return seen is not None and (now - seen).total_seconds() < settings.STATION_SEEN_WRITE_SECONDS


_AFTER_REVOCATION = frozenset({MqttDevice.Status.ONBOARDING, MqttDevice.Status.AWAITING_APPROVAL})


def _device_changes(
    device: MqttDevice, entry: dict[str, Any], now: datetime, notes: list[str]
) -> dict[str, Any]:
    """The fields of ``device`` that the report's ``entry`` changes (empty: nothing to write);
    parts of the entry that are ignored add a sentence to ``notes``."""
    changes: dict[str, Any] = {}
    status = _AGENT_STATUS[entry["status"]]
    # A revoked device stays revoked whatever its agent says, until a new onboarding request
    # is under way (or a new certificate is issued, see devices_certificate_issued).
    revoked = device.status == MqttDevice.Status.REVOKED and status not in _AFTER_REVOCATION
    if status != device.status and not revoked:
        changes["status"] = status
    error = (entry.get("last_error") or "")[:500]
    if error != device.last_error:
        changes["last_error"] = error
    thing_name = (entry.get("thing_name") or "")[:128]
    if thing_name and thing_name != device.client_id:
        # The client id is the certificate's CN, which the portal decides: a report may fill
        # it in (a device provisioned by claim) but never change it.
        if device.client_id or device.current_certificate_id is not None:
            notes.append(
                f"Device '{device.name}' reported thing name {thing_name!r}, but its client id "
                f"is its certificate's name {device.client_id!r}; ignored."
            )
        else:
            changes["client_id"] = thing_name
    last_connected = _parse_time(entry.get("last_connected"))
    if last_connected is not None:
        last_connected = min(last_connected, now)
        if last_connected != device.last_connected_at:
            changes["last_connected_at"] = last_connected
    elif entry.get("connected"):
        # "Connected now" without a time: coalesced like "last seen".
        previous = device.last_connected_at
        if (
            previous is None
            or (now - previous).total_seconds() >= settings.STATION_SEEN_WRITE_SECONDS
        ):
            changes["last_connected_at"] = now
    return changes


STALE_NOTE = "This report is older than one already recorded from this agent; ignored."


def _report_order(report: dict[str, Any]) -> tuple[str, int] | None:
    """(run, sequence) of a report that carries them: the agent's run id (new each start)
    and its report counter."""
    run, sequence = report.get("run") or "", report.get("sequence")
    return (run, int(sequence)) if run and sequence is not None else None


def _is_stale(reported_state: dict[str, Any] | None, order: tuple[str, int] | None) -> bool:
    """Whether a report comes from the same agent run as the recorded one, with a sequence
    number not above it (it was sent before, and arrives late)."""
    if order is None or not reported_state:
        return False
    recorded = reported_state.get("order")
    if not isinstance(recorded, list) or len(recorded) != 2:
        return False
    return bool(
        recorded[0] == order[0] and isinstance(recorded[1], int) and recorded[1] >= order[1]
    )


def station_state_record(
    *, station: Station, report: dict[str, Any]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Record an agent's state report on the station and its devices.

    ``report`` is the validated body of POST /agent/state. Devices the portal does not know on
    this station are ignored (a station cannot create devices by reporting them). Returns the
    notes about ignored parts and the reported entries of known devices, by name.

    Most reports repeat the last one: then nothing is written unless "last seen" is older
    than STATION_SEEN_WRITE_SECONDS (so ``reported_state.received_at`` and ``last_seen_at``
    are at most that old). Changed device fields are written alone, in one transaction.
    A report that carries the agent's run id and sequence number and is older than the one
    recorded (sent before it, arriving late) is ignored: nothing is written or returned.
    """
    now = timezone.now()
    notes: list[str] = []
    devices = {d.name: d for d in MqttDevice.objects.filter(station=station)}
    reported: dict[str, dict[str, Any]] = {}
    changes: dict[int, dict[str, Any]] = {}
    for entry in report.get("devices", []):
        name = entry["name"]
        device = devices.get(name)
        if device is None:
            notes.append(f"Device '{name}' is not configured on this station; ignored.")
            continue
        reported[name] = entry
        if diff := _device_changes(device, entry, now, notes):
            changes[device.pk] = diff
    agent_version = report.get("agent_version", "")[:40]
    state = {
        "agent_version": agent_version,
        "devices": report.get("devices", []),
        **({"notes": notes} if notes else {}),
    }
    order = _report_order(report)
    if _is_stale(station.reported_state, order):
        return [STALE_NOTE], {}
    previous = {
        k: v for k, v in (station.reported_state or {}).items() if k not in ("received_at", "order")
    }
    if not changes and previous == state and _seen_recently(station, now):
        return notes, reported
    with transaction.atomic():
        # Two reports of one agent may be handled at once (one it gave up waiting for, and
        # the next): the station row decides which is newer.
        if order is not None:
            stored = Station.objects.select_for_update().values_list("reported_state", flat=True)
            if _is_stale(stored.get(pk=station.pk), order):
                return [STALE_NOTE], {}
        for pk, diff in changes.items():
            MqttDevice.objects.filter(pk=pk).update(**diff, updated_at=now)
        station.last_seen_at = now
        station.agent_version = agent_version
        station.reported_state = {
            "received_at": now.isoformat(),
            **state,
            **({"order": list(order)} if order else {}),
        }
        station.save(update_fields=["last_seen_at", "agent_version", "reported_state"])
    return notes, reported
