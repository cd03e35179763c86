"""Local uplink of the agent: data points handed in by local programs (the in-process API
or JSON files dropped into ``<state-dir>/outbox``), checked and queued store-and-forward."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from fleet_agent.device_base import iso
from fleet_agent.ratelimit import AWS_MAX_PAYLOAD

if TYPE_CHECKING:
    from fleet_agent.config import AgentOptions
    from fleet_agent.device import DeviceWorker
    from fleet_agent.diskqueue import DiskQueue
    from fleet_agent.state import StateStore

log = logging.getLogger("fleet_agent")


class PayloadTooLargeError(ValueError):
    """A data point would exceed AWS IoT Core's 128 KB payload limit."""


class UnknownDeviceError(ValueError):
    """A data point names a device this station does not run."""


class UplinkMixin:
    """Queue data points for the devices (mixed into ``Agent``)."""

    options: AgentOptions
    state: StateStore
    queue: DiskQueue
    station: str
    workers: dict[str, DeviceWorker]

    def publish_point(
        self, device: str, point: str, value: Any, ts: str | None = None, **extra: Any
    ) -> int:
        """Queue a data point for ``device`` (store-and-forward, QoS 1). Returns the item id."""
        payload = self._encode_point(device, point, value, ts, extra)
        return self._enqueue(device, point, payload)

    def publish_points(self, device: str, points: list[dict[str, Any]]) -> list[int]:
        """Queue several data points of ``device`` in one disk transaction (all or none).

        Each point is ``{"point": ..., "value": ..., "ts"?: ..., **extra}``. One commit for
        the batch instead of one per point: what a local program sending readings in
        bursts (or an outbox file) should use. Returns the item ids.
        """
        encoded = []
        for p in points:
            if not isinstance(p, dict) or p.get("point") in (None, ""):
                raise ValueError("each data point needs a 'point'.")
            extra = {k: v for k, v in p.items() if k not in ("point", "value", "ts")}
            point = str(p["point"])
            encoded.append(
                (point, self._encode_point(device, point, p.get("value"), p.get("ts"), extra))
            )
        ids = self.queue.put_many(device, encoded)
        worker = self.workers.get(device)
        if worker is not None:
            worker.queue_hint()
        return ids

    def _encode_point(
        self, device: str, point: str, value: Any, ts: str | None, extra: dict[str, Any]
    ) -> bytes:
        """Check and serialise a point; raises before anything is queued."""
        if self.queue is None:
            raise RuntimeError("the agent is not running")
        if device not in self.workers and not self.state.device(device):
            raise UnknownDeviceError(f"device {device!r} is not configured on this station.")
        body = {
            **extra,
            "station": self.station,
            "device": device,
            "point": point,
            "value": value,
            "ts": ts or iso(dt.datetime.now(dt.UTC)),
        }
        try:
            payload = json.dumps(body, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            raise ValueError(
                f"the value of data point {point!r} is not JSON-serialisable."
            ) from None
        if len(payload) > AWS_MAX_PAYLOAD:
            raise PayloadTooLargeError(
                f"the data point is {len(payload)} bytes; AWS IoT Core accepts at most "
                f"{AWS_MAX_PAYLOAD} bytes per message."
            )
        return payload

    def _enqueue(self, device: str, point: str, payload: bytes) -> int:
        item_id = self.queue.put(device, point, payload)
        worker = self.workers.get(device)
        if worker is not None:
            worker.queue_hint()
        return item_id

    def _ingest_outbox(self) -> None:
        """Queue data points dropped as ``<state-dir>/outbox/*.json`` by local programs."""
        outbox = self.options.state_dir / "outbox"
        try:
            names = sorted(e.name for e in os.scandir(outbox) if e.name.endswith(".json"))
        except OSError:
            return
        for fname in names:
            path = outbox / fname
            try:
                data = json.loads(path.read_text())
                points = data if isinstance(data, list) else [data]
                for p in points:
                    if not isinstance(p, dict) or "device" not in p or "point" not in p:
                        raise ValueError("each data point needs 'device' and 'point'")
                if not self.workers:
                    return  # config not loaded yet: try again later
                # Validate the whole file first so a bad point queues nothing from it.
                encoded = []
                for p in points:
                    extra = {
                        k: v for k, v in p.items() if k not in ("device", "point", "value", "ts")
                    }
                    device, point = str(p["device"]), str(p["point"])
                    payload = self._encode_point(device, point, p.get("value"), p.get("ts"), extra)
                    encoded.append((device, point, payload))
                by_device: dict[str, list[tuple[str, bytes]]] = {}
                for device, point, payload in encoded:
                    by_device.setdefault(device, []).append((point, payload))
                for device, items in by_device.items():
                    self.queue.put_many(device, items)  # one commit per device and file
                    worker = self.workers.get(device)
                    if worker is not None:
                        worker.queue_hint()
            except (ValueError, OSError) as exc:
                log.error("outbox file %s rejected: %s", fname, exc)
                rejected = outbox / "rejected"
                rejected.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):
                    os.replace(path, rejected / fname)
                continue
            with contextlib.suppress(OSError):
                path.unlink()
