"""Admin for connections: the same service as the API; secrets are write-only, never rendered."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from portal.admin import SensitivePostAdminMixin, WriteOnlyTextarea
from provisioning.aws.models import AccessKey

from .models import Connection
from .services import (
    ConnectionData,
    ConnectionInUse,
    ConnectionNameTaken,
    connection_create,
    connection_delete,
    connection_replace,
)

_WRITE_ONLY = "Write-only: never shown again. Leave empty to keep what is stored."


class ConnectionAdminForm(forms.ModelForm):
    """Runs the connection service in the form's model-validation step.

    That way every rule (topic patterns, certificate/key match, access-key storage) is
    checked by the one service and its errors land next to the right field.
    """

    access_key_id = forms.CharField(label="Access key id", max_length=20)
    secret_access_key = forms.CharField(
        label="Secret access key",
        required=False,
        strip=True,
        max_length=40,
        widget=forms.PasswordInput(render_value=False),
        help_text=_WRITE_ONLY,
    )
    access_key_store_for = forms.ChoiceField(
        label="Keep the secret for",
        required=False,
        choices=[("", "unchanged (30 days for a new key)"), *AccessKey.StorePeriod.choices],
    )
    certificate = forms.CharField(
        required=False, widget=WriteOnlyTextarea(attrs={"rows": 4}), help_text=_WRITE_ONLY
    )
    private_key = forms.CharField(
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4}),
        help_text=_WRITE_ONLY + " Not even shown back when the form has errors.",
    )
    remove_certificate = forms.BooleanField(
        required=False, help_text="Remove the stored certificate and private key."
    )

    actor: Any = None

    class Meta:
        model = Connection
        fields = [
            "name",
            "description",
            "region",
            "account_prefix",
            "device_type",
            "certificate_id",
            "uplink_topic_pattern",
            "downlink_topic_pattern",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["access_key_id"].initial = self.instance.access_key.access_key_id
        self.fields["account_prefix"].help_text = (
            "The account's endpoint prefix, or the endpoint itself "
            "(<prefix>-ats.iot.<region>.amazonaws.com)."
        )
        prefix: Any = self.fields["account_prefix"]
        prefix.validators = []
        prefix.max_length = 253
        prefix.widget.attrs["maxlength"] = "253"

    _FIELD_FOR = {"access_key": "access_key_id", "certificate_pem": "certificate"}

    def _post_clean(self) -> None:
        if self.errors:
            return
        d = self.cleaned_data
        remove = d.get("remove_certificate")
        data = ConnectionData(
            name=d["name"],
            description=d.get("description") or "",
            region=d["region"],
            account_prefix=d["account_prefix"],
            device_type=d.get("device_type") or "",
            certificate_id=d.get("certificate_id") or "",
            uplink_topic_pattern=d["uplink_topic_pattern"],
            downlink_topic_pattern=d.get("downlink_topic_pattern") or "",
            access_key_id=d["access_key_id"],
            secret_access_key=d.get("secret_access_key") or None,
            access_key_store_for=d.get("access_key_store_for") or None,
            certificate="" if remove else (d.get("certificate") or None),
            private_key="" if remove else (d.get("private_key") or None),
        )
        try:
            if self.instance.pk:
                self.instance = connection_replace(
                    connection=self.instance, data=data, actor=self.actor
                )
            else:
                self.instance = connection_create(data=data, actor=self.actor)
        except ConnectionNameTaken as exc:
            self.add_error("name", exc.detail)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                name = self._FIELD_FOR.get(field, field)
                self.add_error(name if name in self.fields else None, errors)


@admin.register(Connection)
class ConnectionAdmin(SensitivePostAdminMixin, admin.ModelAdmin):
    sensitive_post_parameters = ("secret_access_key", "private_key", "certificate")
    form = ConnectionAdminForm
    list_display = [
        "name",
        "region",
        "endpoint",
        "uplink_topic_pattern",
        "downlink_topic_pattern",
        "bound_devices",
        "has_certificate_display",
    ]
    list_select_related = ["access_key"]
    search_fields = ["name", "description", "account_prefix"]
    list_filter = ["region"]
    show_full_result_count = False
    readonly_fields = [
        "endpoint",
        "certificate_fingerprint",
        "certificate_not_after",
        "secret_stored",
        "bound_devices",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("AWS IoT account", {"fields": ["region", "account_prefix", "endpoint", "device_type"]}),
        (
            "Access key",
            {
                "fields": [
                    "access_key_id",
                    "secret_access_key",
                    "access_key_store_for",
                    "secret_stored",
                ]
            },
        ),
        (
            "Certificate (write-only)",
            {
                "fields": [
                    "certificate_id",
                    "certificate",
                    "private_key",
                    "remove_certificate",
                    "certificate_fingerprint",
                    "certificate_not_after",
                ]
            },
        ),
        ("Topics", {"fields": ["uplink_topic_pattern", "downlink_topic_pattern", "bound_devices"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type("ConnectionAdminFormFor", (form,), {"actor": request.user})

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        """The form already saved through the service."""

    @admin.display(description="bound devices")
    def bound_devices(self, obj: Connection) -> int:
        count = getattr(obj, "device_count", None)
        return count if count is not None else obj.devices.count()

    @admin.display(description="certificate", boolean=True)
    def has_certificate_display(self, obj: Connection) -> bool:
        return obj.has_certificate

    @admin.display(description="secret stored", boolean=True)
    def secret_stored(self, obj: Connection) -> bool:
        return obj.access_key.is_stored

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A connection with bound devices is not deletable: unbind first (the API says why).
        if obj is not None and obj.devices.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Connection) -> None:
        try:
            connection_delete(connection=obj, actor=request.user)
        except ConnectionInUse as exc:
            self.message_user(request, exc.detail, messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        deleted = 0
        for conn in queryset:
            try:
                connection_delete(connection=conn, actor=request.user)
                deleted += 1
            except ConnectionInUse as exc:
                self.message_user(request, exc.detail, messages.ERROR)
        if deleted:
            self.message_user(
                request, f"Deleted {deleted} connection{'s' if deleted != 1 else ''}."
            )
