"""What a fleet install would do on each station: create the device, update it, leave it,
or skip it (already connected). A dry run stores this plan and changes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from devices.models import MqttDevice, Station
from signing.models import SigningProfile


@dataclass(frozen=True)
class PlanEntry:
    """What a fleet install would do on one station."""

    station: str
    action: str  # create | update | nothing | skip
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"station": self.station, "action": self.action, "detail": self.detail}


def fleet_install_plan(
    *,
    stations: Iterable[Station],
    device_name: str,
    endpoint: str,
    port: int,
    profile: SigningProfile,
) -> list[PlanEntry]:
    """Per station: create the device, update it, leave it, or skip it (already connected)."""
    stations = list(stations)
    existing = {
        d.station_id: d for d in MqttDevice.objects.filter(station__in=stations, name=device_name)
    }
    plan = []
    for station in stations:
        device = existing.get(station.pk)
        if device is None:
            plan.append(
                PlanEntry(
                    station.name,
                    "create",
                    f"Create device '{device_name}' for {endpoint}:{port} "
                    f"(profile {profile.name}).",
                )
            )
        elif device.status == MqttDevice.Status.CONNECTED:
            plan.append(
                PlanEntry(
                    station.name,
                    "skip",
                    "Already connected; nothing changes (no second certificate).",
                )
            )
        else:
            changes = []
            if (device.endpoint, device.port) != (endpoint, port):
                changes.append(
                    f"endpoint {device.endpoint or '(none)'}:{device.port} -> {endpoint}:{port}"
                )
            if device.signing_profile_id != profile.pk:
                changes.append(f"profile -> {profile.name}")
            if changes:
                plan.append(
                    PlanEntry(
                        station.name,
                        "update",
                        "Update device '" + device_name + "': " + "; ".join(changes) + ".",
                    )
                )
            else:
                plan.append(
                    PlanEntry(
                        station.name,
                        "nothing",
                        f"Device already configured ({device.get_status_display()});"
                        " nothing changes.",
                    )
                )
    return plan


def plan_summary(plan: list[dict[str, str]]) -> str:
    counts = {
        a: sum(1 for p in plan if p["action"] == a) for a in ("create", "update", "nothing", "skip")
    }
    return (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['nothing']} unchanged, {counts['skip']} already connected"
    )
