"""App config of the portal itself: cross-cutting models, checks and periodic-task install."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
        from .schedules import install_periodic_tasks
        from .services import encryption_canary_ensure

        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="portal-post-migrate")
        self._install = install_periodic_tasks
        self._canary = encryption_canary_ensure


def _after_migrate(sender: PortalConfig, using: str = "default", **kwargs: object) -> None:
    sender._canary(using=using)
    sender._install(using=using)
