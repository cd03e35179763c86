"""Celery tasks of the provisioning app: thin doors into the services."""
