"""The agent's runtime state file ``<state-dir>/state.json``.

Modelled on the AWS IoT Device Client's runtime config: per device a ``completed`` flag,
the thing name, key/certificate/chain paths, the pending onboarding request id and any
renewal in flight. It is the agent's memory across restarts, so it is written atomically
and a damaged file stops the agent instead of being replaced (which would mean new keys
and a second certificate for the same device).
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

from fleet_agent.fsutil import atomic_write

STATE_VERSION = 1


class CorruptStateError(Exception):
    """The state file exists but cannot be trusted; the message is one sentence."""


def _corrupt(path: Path, why: str) -> CorruptStateError:
    return CorruptStateError(
        f"the state file {path} is corrupt ({why}); restore it from a backup or run "
        "`fleet-agent reset --discard-corrupt` to onboard again on purpose."
    )


class StateStore:
    """Thread-safe access to state.json; every change is persisted before it returns."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "state.json"
        self._lock = threading.RLock()
        self._data: dict[str, Any] = {"version": STATE_VERSION, "devices": {}}

    def load(self) -> None:
        """Read the file (a missing file is a fresh station); raise on a damaged one."""
        with self._lock:
            if not self.path.exists():
                self._data = {"version": STATE_VERSION, "devices": {}}
                return
            self._data = read_state_file(self.path)

    def save(self) -> None:
        with self._lock:
            blob = json.dumps(self._data, indent=2, sort_keys=True).encode() + b"\n"
            atomic_write(self.path, blob, 0o600)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._data)

    def device(self, name: str) -> dict[str, Any]:
        """A copy of one device's entry (empty dict when the device is new)."""
        with self._lock:
            return copy.deepcopy(self._data["devices"].get(name, {}))

    def device_names(self) -> list[str]:
        with self._lock:
            return list(self._data["devices"])

    def update_device(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into a device entry (``None`` deletes a key) and persist."""
        with self._lock:
            entry = self._data["devices"].setdefault(name, {"completed": False})
            for key, value in fields.items():
                if value is None:
                    entry.pop(key, None)
                else:
                    entry[key] = value
            self.save()
            return copy.deepcopy(entry)

    def remove_device(self, name: str) -> None:
        with self._lock:
            self._data["devices"].pop(name, None)
            self.save()

    def set_meta(self, **fields: Any) -> None:
        with self._lock:
            changed = False
            for key, value in fields.items():
                if self._data.get(key) != value:
                    self._data[key] = value
                    changed = True
            if changed:
                self.save()

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return copy.deepcopy(self._data.get(key, default))


def read_state_file(path: Path) -> dict[str, Any]:
    """Parse and validate a state file, raising CorruptStateError with a sentence."""
    try:
        raw = path.read_text()
    except OSError as exc:
        raise CorruptStateError(f"the state file {path} cannot be read ({exc.strerror}).") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise _corrupt(path, "not valid JSON") from None
    if not isinstance(data, dict):
        raise _corrupt(path, "top level is not an object")
    if data.get("version") != STATE_VERSION:
        raise _corrupt(path, f"unknown version {data.get('version')!r}")
    devices = data.get("devices")
    if not isinstance(devices, dict):
        raise _corrupt(path, "'devices' is not an object")
    for name, entry in devices.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("completed"), bool):
            raise _corrupt(path, f"device {name!r} has no boolean 'completed' flag")
        if entry["completed"] and not (entry.get("cert_path") and entry.get("key_path")):
            raise _corrupt(path, f"device {name!r} is completed but has no cert/key paths")
    return data


def desired_cache_load(state_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The last desired configuration and its ETag (keeps devices online through a portal
    outage after a restart); ``(None, None)`` when there is none or it is unreadable."""
    try:
        data = json.loads((Path(state_dir) / "desired.json").read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return None, None
    return data["config"], data.get("etag")


def desired_cache_store(
    state_dir: Path, cfg: dict[str, Any], etag: str | None, *, with_secrets: bool = True
) -> None:
    """Keep the configuration for the next start; 0600 as it holds the key passwords, or
    without them (``with_secrets=False``: devices then wait for the portal after a restart,
    and no ETag is kept, so the first poll fetches the passwords again)."""
    if not with_secrets:
        devices = [
            {k: v for k, v in d.items() if k != "key_password"} if isinstance(d, dict) else d
            for d in cfg.get("devices") or []
        ]
        cfg, etag = {**cfg, "devices": devices}, None
    blob = json.dumps({"etag": etag, "config": cfg}).encode()
    atomic_write(Path(state_dir) / "desired.json", blob, 0o600)
