"""The Celery application. Tasks are thin doors: they take ids, re-read rows, call services."""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery, signals

from .broker_fs import install as install_atomic_filesystem_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
install_atomic_filesystem_broker()

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _refuse_wrong_encryption_key(**_: Any) -> None:
    """A worker or beat with the wrong FIELD_ENCRYPTION_KEY would hand ciphertext around as
    secrets (the field library does not raise); stop with the same sentence as the web."""
    from django.core.exceptions import ImproperlyConfigured

    from portal.checks import require_usable_encryption_key

    try:
        require_usable_encryption_key()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.stderr.flush()
        os._exit(1)  # Celery would catch SystemExit during start-up and carry on


# Celery's Django fixup closes every database connection before and after EACH task unless
# CELERY_DB_REUSE_MAX is set (settings.py); every signing batch then paid for a new
# PostgreSQL backend (fork, authentication, cold catalog caches, plans). With reuse on, the
# worker treats a task like Django treats a request: CONN_MAX_AGE and CONN_HEALTH_CHECKS
# decide, and a connection left in a broken state or inside a transaction is dropped.
@signals.task_prerun.connect
@signals.task_postrun.connect
def _recycle_old_db_connections(sender: Any = None, **_: Any) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run in the caller's process (tests, eager mode): its connection, not ours
    from django.db import close_old_connections

    close_old_connections()
