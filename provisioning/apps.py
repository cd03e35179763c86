from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "AWS provisioning"

    def ready(self) -> None:
        from .lifecycle import receivers  # noqa: F401 - connects the signal receivers
