"""Background jobs: a row per long-running piece of work, its append-only log and progress."""

from .services import (
    job_cancel,
    job_create,
    job_finish,
    job_log,
    job_progress,
    job_progress_set,
    job_start,
)

__all__ = [
    "job_cancel",
    "job_create",
    "job_finish",
    "job_log",
    "job_progress",
    "job_progress_set",
    "job_start",
]
