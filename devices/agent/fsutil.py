"""Crash-safe file writes for the agent's state directory.

A station can lose power at any moment; a half-written key or state file would either
brick the device or make the agent think it must onboard again, so every write goes to a
temporary file in the same directory, is fsynced, and replaces the target atomically.
"""

from __future__ import annotations

import contextlib
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
