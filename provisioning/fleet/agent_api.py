"""The station agent's API (docs/agent-protocol.md): desired configuration and state reports.

Both endpoints authenticate the station by its bearer token and only ever touch that
station's rows, so one station can never read another's configuration or secrets.
"""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.dateparse import parse_datetime
from ninja import Field, Router, Schema
from pydantic import field_validator

from devices.auth import StationTokenAuth
from portal.errors import InvalidInput
from portal.http_api import ApiError

from .agent_config import etag_matches, station_agent_config_with_etag
from .agent_reports import fleet_config_delivered, station_report_state

router = Router(tags=["agent"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class DeviceReport(Schema):
    name: str = Field(..., pattern=NAME_PATTERN)
    status: Literal[
        "installed", "onboarding", "awaiting_approval", "certificate_issued", "connected", "error"
    ]
    thing_name: str | None = Field(None, max_length=128)
    onboarding_request_id: int | None = Field(None, ge=1)
    certificate_serial: str | None = Field(None, max_length=100)
    certificate_not_after: str | None = Field(None, max_length=40)
    connected: bool = False
    last_connected: str | None = Field(None, max_length=40)
    last_error: str | None = Field(None, max_length=2000)
    queue_depth: int | None = Field(None, ge=0)
    queue_dropped: int | None = Field(None, ge=0)

    @field_validator("certificate_not_after", "last_connected")
    @classmethod
    def _iso_datetime(cls, value: str | None) -> str | None:
        """An ISO 8601 date and time that exists (2026-02-30 does not): a 422 otherwise."""
        if not value:
            return value
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValueError(f"{value!r} is not a valid ISO 8601 date and time")
        return value


class StateReport(Schema):
    agent_version: str = Field("", max_length=40)
    # The agent's run (new at each start) and its report counter: a report that arrives
    # after a newer one of the same run is ignored.
    run: str = Field("", max_length=32, pattern=r"^[0-9a-f]*$")
    sequence: int | None = Field(None, ge=0, le=2**53)
    devices: list[DeviceReport] = Field(default_factory=list, max_length=100)


class StateAck(Schema):
    ok: bool
    notes: list[str] = []


def _check_size(request: HttpRequest) -> None:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if max(length, len(request.body or b"")) > settings.AGENT_MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "The state report is larger than the portal accepts.")


@router.get(
    "/agent/config",
    auth=StationTokenAuth(),
    url_name="agent_config",
    summary="Desired configuration of the calling station (ETag / If-None-Match)",
)
def agent_config(request: HttpRequest) -> HttpResponse:
    station = request.auth  # type: ignore[attr-defined]
    config, etag, awaiting_delivery = station_agent_config_with_etag(station)
    # A 304 also proves delivery: the agent already holds exactly this configuration.
    if awaiting_delivery:
        fleet_config_delivered(station=station, device_names=[d["name"] for d in config["devices"]])
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    else:
        response = JsonResponse(config, status=200)
    response["ETag"] = etag
    response["Cache-Control"] = "no-store, private"
    return response


@router.post(
    "/agent/state",
    auth=StationTokenAuth(),
    response=StateAck,
    url_name="agent_state",
    summary="State report / heartbeat of the calling station",
)
def agent_state(request: HttpRequest, payload: StateReport) -> dict[str, object]:
    _check_size(request)
    names = [d.name for d in payload.devices]
    if len(names) != len(set(names)):
        raise InvalidInput("Each device may appear only once in a report.")
    notes = station_report_state(
        station=request.auth,  # type: ignore[attr-defined]
        report=payload.model_dump(),
    )
    return {"ok": True, "notes": notes}
