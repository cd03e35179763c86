"""Hand-offs to Celery after a commit that never fail the door that committed.

Request-shaped work is a row first: the service commits the row, then this module sends
the task. If the broker is unreachable at that moment the row is already recorded and a
sweeper re-enqueues it once the broker is back, so the send failing must not turn into a
500 or a traceback for the caller. The failure is logged (task name and error type, never
the arguments), counted, and visible to the door through :func:`handoffs_deferred`, which
turns it into a sentence ("the work starts when the task queue is reachable").
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

_deferred: contextvars.ContextVar[int] = contextvars.ContextVar("handoffs_deferred", default=0)

DEFERRED_SENTENCE = (
    "The task queue is not reachable right now: the work is recorded and starts as soon as "
    "the queue is back."
)


def send_task(task: Any, *args: Any, **options: Any) -> bool:
    """Send ``task`` now; False (logged, counted) when the broker refuses or is down."""
    try:
        task.apply_async(args=args, **options)
    except Exception as exc:  # kombu OperationalError, redis ConnectionError, socket errors
        _deferred.set(_deferred.get() + 1)
        logger.warning(
            "Could not hand %s to the task queue (%s); a sweeper will pick the work up.",
            getattr(task, "name", task),
            type(exc).__name__,
        )
        return False
    return True


def send_task_on_commit(task: Any, *args: Any, **options: Any) -> None:
    """Send ``task`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send_task(task, *args, **options))


def handoffs_deferred() -> int:
    """How many hand-offs in this request/command could not reach the broker so far."""
    return _deferred.get()


def handoffs_reset() -> None:
    """Start counting afresh (a door calls it before the service it will report on)."""
    _deferred.set(0)


def handoffs_tell_admin(modeladmin: Any, request: Any) -> None:
    """An admin door's WARNING message when a hand-off since the last reset was deferred."""
    from django.contrib import messages

    if handoffs_deferred():
        modeladmin.message_user(request, DEFERRED_SENTENCE, messages.WARNING)


def handoffs_tell_command(command: Any) -> None:
    """A command's line on stderr when a hand-off since the last reset was deferred (exit 0)."""
    if handoffs_deferred():
        command.stderr.write(DEFERRED_SENTENCE)
