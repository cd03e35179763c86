"""App config of the cockpit: its admin (alert channels), tasks and template tags."""

from django.apps import AppConfig


class CockpitConfig(AppConfig):
    name = "portal.cockpit"
    label = "cockpit"
    verbose_name = "Cockpit"

    def ready(self) -> None:
        from . import (  # noqa: F401  (the providers)
            metrics,
            providers,
            providers_audit,
            providers_lifecycle,
        )
