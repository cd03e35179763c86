"""Celery tasks of the signing service: thin doors into the services."""
