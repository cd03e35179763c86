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
        self._load_totals()

    def _load_totals(self) -> None:
        """Per-device depth and bytes, kept in memory so a put costs the same at any depth.

        Only this process writes the file (the state directory is locked), so the totals
        cannot drift; they are rebuilt from the rows at every start.
        """
        self._count: dict[str, int] = {}
        self._size: dict[str, int] = {}
        for device, count, size in self._db.execute(
            "SELECT device, COUNT(*), COALESCE(SUM(size), 0) FROM messages GROUP BY device"
        ):
            self._count[device] = int(count)
            self._size[device] = int(size)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, device: str, point: str, payload: bytes) -> int:
        """Append an item; drop the device's oldest items beyond the bounds. Returns its id."""
        return self.put_many(device, [(point, payload)])[0]

    def put_many(self, device: str, items: list[tuple[str, bytes]]) -> list[int]:
        """Append ``(point, payload)`` items in one transaction (all or none); their ids.

        When the device's bounds are exceeded its oldest items are dropped and counted.
        """
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                count = self._count.get(device, 0)
                size = self._size.get(device, 0)
                for point, payload in items:
                    cur = db.execute(
                        "INSERT INTO messages(device, point, payload, size, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (device, point, payload, len(payload), now),
                    )
                    ids.append(int(cur.lastrowid or 0))
                    count += 1
                    size += len(payload)
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
                    rows.close()
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
            self._count[device] = count
            self._size[device] = size
            return ids

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
        self.ack_many([item_id])

    def ack_many(self, item_ids: list[int]) -> None:
        """Forget several acknowledged items in one transaction (one commit per batch)."""
        if not item_ids:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                gone: list[tuple[str, int]] = []
                for start in range(0, len(item_ids), 500):
                    chunk = item_ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    gone.extend(
                        db.execute(
                            f"DELETE FROM messages WHERE id IN ({marks}) RETURNING device, size",
                            chunk,
                        ).fetchall()
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for device, size in gone:
                self._count[device] = self._count.get(device, 0) - 1
                self._size[device] = self._size.get(device, 0) - int(size)

    def depth(self, device: str) -> int:
        with self._lock:
            return self._count.get(device, 0)

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
