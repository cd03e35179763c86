"""Disk-backed store-and-forward queue for uplink data points (SQLite, WAL mode).

The reference LPWAN connector loses every message sent while its connection is down; this
queue keeps them across outages and restarts. An item leaves the queue only when the
broker acknowledged it (PUBACK). The queue is bounded per device; when full, the oldest
items are dropped and counted, because fresh readings matter more than old ones.
It also remembers recently handled downlink command ids, so a QoS 1 redelivery (even after
a restart) reaches the local handler only once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SEEN_KEEP = 10_000


@dataclass(frozen=True)
class QueuedItem:
    id: int
    device: str
    point: str
    payload: bytes


class DiskQueue:
    """One SQLite file per agent, rows keyed by device; safe to share between threads."""

    def __init__(
        self, path: Path | str, *, max_messages: int = 100_000, max_bytes: int = 64 << 20
    ) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; a power cut may lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                device TEXT NOT NULL, point TEXT NOT NULL,
                payload BLOB NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS messages_device ON messages(device, id);
            CREATE TABLE IF NOT EXISTS counters (
                device TEXT PRIMARY KEY, dropped INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS seen (
                device TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (device, key));
            """
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, device: str, point: str, payload: bytes) -> int:
        """Append an item; drop the device's oldest items beyond the bounds. Returns its id."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO messages(device, point, payload, size, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (device, point, payload, len(payload), time.time()),
                )
                item_id = int(cur.lastrowid or 0)
                count, size = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE device = ?",
                    (device,),
                ).fetchone()
                dropped = 0
                if count > self.max_messages or size > self.max_bytes:
                    rows = db.execute(
                        "SELECT id, size FROM messages WHERE device = ? ORDER BY id",
                        (device,),
                    )
                    victims = []
                    for row_id, row_size in rows:
                        if count <= self.max_messages and size <= self.max_bytes:
                            break
                        victims.append((row_id,))
                        count -= 1
                        size -= row_size
                    db.executemany("DELETE FROM messages WHERE id = ?", victims)
                    dropped = len(victims)
                if dropped:
                    db.execute(
                        "INSERT INTO counters(device, dropped) VALUES (?, ?) "
                        "ON CONFLICT(device) DO UPDATE SET dropped = dropped + excluded.dropped",
                        (device, dropped),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return item_id

    def peek(self, device: str, after_id: int, limit: int) -> list[QueuedItem]:
        """Oldest items of ``device`` with id > ``after_id`` (items already in flight skipped)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, point, payload FROM messages "
                "WHERE device = ? AND id > ? ORDER BY id LIMIT ?",
                (device, after_id, limit),
            ).fetchall()
        return [QueuedItem(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def ack(self, item_id: int) -> None:
        """The broker has the item (PUBACK): forget it."""
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE id = ?", (item_id,))

    def depth(self, device: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM messages WHERE device = ?", (device,)
                ).fetchone()[0]
            )

    def dropped(self, device: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT dropped FROM counters WHERE device = ?", (device,)
            ).fetchone()
        return int(row[0]) if row else 0

    def mark_seen(self, device: str, key: str) -> bool:
        """Record a downlink command id; False if it was already handled."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO seen(device, key, at) VALUES (?, ?, ?)",
                (device, key, time.time()),
            )
            if cur.rowcount == 0:
                return False
            self._db.execute(
                "DELETE FROM seen WHERE device = ? AND key NOT IN "
                "(SELECT key FROM seen WHERE device = ? ORDER BY at DESC LIMIT ?)",
                (device, device, SEEN_KEEP),
            )
            return True

    def was_seen(self, device: str, key: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM seen WHERE device = ? AND key = ?", (device, key)
                ).fetchone()
                is not None
            )
