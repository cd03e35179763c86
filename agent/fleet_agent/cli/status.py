"""``fleet-agent status``: the first thing a technician runs; per device what it is doing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fleet_agent.cli.options import UsageError
from fleet_agent.diskqueue import DiskQueue
from fleet_agent.fsutil import lock_holder_alive
from fleet_agent.state import StateStore


def _fmt(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def cmd_status(args: argparse.Namespace) -> int:
    if not Path(args.state_dir).is_dir():
        raise UsageError(f"the state directory {args.state_dir} does not exist.")
    store = StateStore(args.state_dir)
    store.load()  # a missing state.json is a station that has not onboarded yet
    snap = store.snapshot()
    live: dict[str, dict[str, Any]] = {}
    updated = None
    try:
        status_doc = json.loads((Path(args.state_dir) / "status.json").read_text())
        updated = status_doc.get("updated")
        live = {d["name"]: d for d in status_doc.get("devices", []) if "name" in d}
    except (OSError, ValueError, TypeError, KeyError):
        pass
    running = lock_holder_alive(Path(args.state_dir))
    queue_path = Path(args.state_dir) / "queue.sqlite3"
    queue = DiskQueue(queue_path) if queue_path.exists() else None
    rows = []
    for name, entry in sorted(snap["devices"].items()):
        rows.append(_row(name, entry, live.get(name, {}), running, queue))
    if queue:
        queue.close()
    if args.json:
        doc = {
            "station": snap.get("station"),
            "agent_running": running,
            "status_updated": updated,
            "devices": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"station: {_fmt(snap.get('station'))}")
    print(f"agent: {'running' if running else 'not running'} (status as of {_fmt(updated)})")
    if not rows:
        print("no devices yet (the agent has not received its configuration)")
    for row in rows:
        _print_row(row)
    return 0


def _row(
    name: str,
    entry: dict[str, Any],
    now: dict[str, Any],
    running: bool,
    queue: DiskQueue | None,
) -> dict[str, Any]:
    pending = entry.get("pending_renewal") or {}
    waiting = now.get("waiting_for") if running else None
    if not running:
        waiting = "the agent to be started (systemctl start fleet-agent)"
    return {
        "device": name,
        "status": now.get("status") if running else "stopped",
        "connected": bool(now.get("connected")) and running,
        "last_connected": now.get("last_connected"),
        "last_error": now.get("last_error"),
        "completed": entry.get("completed", False),
        "provisioning": entry.get("provisioning"),
        "thing_name": entry.get("thing_name"),
        "request_id": entry.get("request_id"),
        "cert_serial": entry.get("cert_serial"),
        "cert_not_after": entry.get("cert_not_after"),
        "renew_at": now.get("renew_at"),
        "renewal_request_id": pending.get("request_id"),
        "renewing": bool(pending),
        "replacing": pending.get("mode") if pending else None,
        "replacing_why": pending.get("why"),
        "recovery": entry.get("recovery"),
        "waiting_for": waiting,
        "key_path": entry.get("key_path"),
        "cert_path": entry.get("cert_path"),
        "queue_depth": queue.depth(name) if queue else 0,
        "queue_dropped": queue.dropped(name) if queue else 0,
    }


def _print_row(row: dict[str, Any]) -> None:
    """A block per device in plain words; the first line keeps the key=value summary."""
    print(
        f"{row['device']}: status={_fmt(row['status'])} "
        f"connected={str(row['connected']).lower()} "
        f"completed={str(row['completed']).lower()} "
        f"thing={_fmt(row['thing_name'])} request={_fmt(row['request_id'])}"
    )
    if row["cert_serial"]:
        print(
            f"  certificate: serial {row['cert_serial']}, expires {_fmt(row['cert_not_after'])}"
            f", renewal from {_fmt(row['renew_at'])}"
        )
    else:
        print("  certificate: none yet")
    print(f"  last connected: {_fmt(row['last_connected'])}")
    if row["replacing"] == "recovery":
        print(f"  recovery: {_fmt(row['replacing_why'])}; a new key awaits staff approval")
    elif row["replacing"]:
        print(f"  renewing: {_fmt(row['replacing_why'])}")
    elif row["recovery"] and not row["completed"]:
        print(f"  recovery: {row['recovery']}; a new onboarding request follows")
    print(f"  waiting for: {_fmt(row['waiting_for'])}")
    print(f"  queue: {row['queue_depth']} waiting, {row['queue_dropped']} dropped")
    if row["last_error"]:
        print(f"  last error: {row['last_error']}")
