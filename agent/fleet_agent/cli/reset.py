"""``fleet-agent reset``: forget a device's certificates so the next run onboards again."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fleet_agent.cli.options import UsageError
from fleet_agent.fsutil import StateDirLocked, lock_state_dir, remove_quietly, unlock_state_dir
from fleet_agent.state import CorruptStateError, StateStore


def cmd_reset(args: argparse.Namespace) -> int:
    store = StateStore(args.state_dir)
    if not Path(args.state_dir).is_dir():
        raise UsageError(f"the state directory {args.state_dir} does not exist.")
    try:
        lock = lock_state_dir(Path(args.state_dir))
    except StateDirLocked as exc:
        raise UsageError(f"{exc} Stop it before a reset.") from None
    try:
        return _reset_locked(args, store)
    finally:
        unlock_state_dir(lock)


def _reset_locked(args: argparse.Namespace, store: StateStore) -> int:
    try:
        store.load()
    except CorruptStateError:
        if not args.discard_corrupt:
            raise
        aside = store.path.with_name(f"state.json.corrupt-{int(time.time())}")
        store.path.rename(aside)
        print(f"moved the corrupt state file aside to {aside}")
        return 0
    names = [args.device] if args.device else store.device_names()
    if args.device and args.device not in store.device_names():
        raise UsageError(f"device {args.device!r} is not in the state file.")
    if not names:
        print("nothing to reset: no device in the state file")
    for name in names:
        entry = store.device(name)
        paths = [entry.get(k) for k in ("key_path", "cert_path", "chain_path", "fullchain_path")]
        paths.append((entry.get("pending_renewal") or {}).get("key_path"))
        paths.extend((entry.get("retired") or {}).values())
        for path in paths:
            remove_quietly(path)
        store.remove_device(name)
        print(f"{name}: reset; the next run onboards it again with a new key")
    return 0
