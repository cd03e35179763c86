"""pytest plugin loaded before Django settings (``-p tests.test_env``): isolate each test process.

Each xdist worker gets its own data folder (SQLite test database, filesystem broker, dev
secrets) and, when the broker is Redis, its own Redis database number, so parallel workers
never steal each other's Celery tasks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_index = int(re.sub(r"\D", "", _worker) or 0)
_root = Path(__file__).resolve().parent.parent

_base = Path(os.environ.get("TEST_DATA_DIR") or _root / "var" / "test")
os.environ["PORTAL_DATA_DIR"] = str(_base / _worker)

_broker = os.environ.get("CELERY_BROKER_URL", "")
if _broker.startswith("redis://"):
    base = re.sub(r"/\d+$", "", _broker.rstrip("/"))
    offset = int(os.environ.get("TEST_REDIS_DB_OFFSET", "1"))
    os.environ["CELERY_BROKER_URL"] = f"{base}/{offset + _index}"
