"""The fleet onboarding portal project: settings, Celery app, API root and cross-cutting models."""

from .celery import app as celery_app

__all__ = ["celery_app"]
