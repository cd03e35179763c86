"""Crash-safe file writes for the agent's state directory.

A station can lose power at any moment; a half-written key or state file would either
brick the device or make the agent think it must onboard again, so every write goes to a
temporary file in the same directory, is fsynced, and replaces the target atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path


def atomic_write(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with permission ``mode`` from the first byte."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # os.open with the mode: the file is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed or widened nothing, but be explicit
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Persist a rename: without this a power cut can bring back the old directory entry."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path: Path | str | None) -> None:
    """Delete a file if it exists; used for superseded keys and certificates."""
    if not path:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class StateDirLocked(Exception):
    """Another agent process holds the state directory."""


def lock_state_dir(state_dir: Path) -> int:
    """Take an exclusive lock on ``<state-dir>/agent.lock``; returns the fd to keep open.

    Two agents on one state directory would onboard the same device twice; the kernel
    releases the lock when the process dies, even by SIGKILL.
    """
    fd = os.open(Path(state_dir) / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateDirLocked(
            f"another fleet-agent is already running with the state directory {state_dir}."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lock_holder_alive(state_dir: Path) -> bool:
    """Whether the process recorded in agent.lock still runs (for status; takes no lock)."""
    try:
        pid = int((Path(state_dir) / "agent.lock").read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unlock_state_dir(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no pid: status shows the agent as stopped
        with contextlib.suppress(OSError):
            os.close(fd)
