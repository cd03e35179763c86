from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "AWS provisioning"

    def ready(self) -> None:
        from signing.signals import certificate_superseded

        from .lifecycle.retirement import on_certificate_superseded

        certificate_superseded.connect(
            on_certificate_superseded, dispatch_uid="lifecycle_retire_superseded"
        )
