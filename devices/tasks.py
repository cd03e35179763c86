"""Celery tasks of the devices app."""
