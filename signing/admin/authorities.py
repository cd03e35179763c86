"""Admin of the key store: list CAs, add one (generate or import), read-only details, the
certificate's download. No delete and never the private key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from portal.admin import SensitivePostAdminMixin, WriteOnlyTextarea

from ..crypto import KEY_TYPE_CHOICES, KeyType
from ..keystore import ca_certificate
from ..models import CertificateAuthority
from ..services import (
    CA_EXPIRY_WARNING_DAYS,
    ca_generate,
    ca_import_pem,
    ca_import_pkcs12,
    cas_with_active_counts,
)

# Buttons on a CA's page that other apps add (label, admin URL name taking the CA's pk),
# e.g. provisioning's "Rotate CA" and "Retire CA": the signing app does not import them.
_CA_TOOLS: list[tuple[str, str]] = []


def register_ca_tool(label: str, url_name: str) -> None:
    """Show a button ``label`` on every CA's page, linking to ``reverse(url_name, [pk])``."""
    if (label, url_name) not in _CA_TOOLS:
        _CA_TOOLS.append((label, url_name))


def register_ca_action(action: Any) -> None:
    """Offer ``action`` (an admin action function) on the key store's changelist."""
    if action not in CertificateAuthorityAdmin.actions:
        CertificateAuthorityAdmin.actions = [*CertificateAuthorityAdmin.actions, action]


class CertificateAuthorityAddForm(forms.ModelForm):
    """One add form with a mode: generate a CA, import PEM, or import PKCS#12.

    The service runs in ``clean()`` so that every refusal (wrong password, key/cert mismatch,
    not a CA, expired, alias taken) comes back as a form error on the right field; the admin
    view is atomic, so nothing is half-written.
    """

    MODE_GENERATE = "generate"
    MODE_PEM = "pem"
    MODE_PKCS12 = "pkcs12"

    mode = forms.ChoiceField(
        choices=[
            (MODE_GENERATE, "Generate a new CA"),
            (MODE_PEM, "Import PEM certificate + key"),
            (MODE_PKCS12, "Import PKCS#12 (.p12/.pfx)"),
        ],
        initial=MODE_GENERATE,
        widget=forms.RadioSelect,
    )
    alias = forms.CharField(max_length=64)
    password = forms.CharField(
        label="Entry password",
        widget=forms.PasswordInput(render_value=False),
        strip=False,
        help_text="Encrypts the CA's private key in the key store (at least 8 characters).",
    )
    overwrite = forms.BooleanField(
        required=False, help_text="Replace an existing CA with the same alias."
    )
    dn = forms.CharField(
        label="Distinguished name",
        required=False,
        max_length=400,
        help_text="Generate: CN=…,O=…,OU=…,L=…,ST=…,C=… (any subset, CN required).",
    )
    key_type = forms.ChoiceField(
        choices=KEY_TYPE_CHOICES, initial=KeyType.EC_P256.value, required=False
    )
    days = forms.IntegerField(
        label="Validity (days)", initial=730, min_value=1, max_value=36500, required=False
    )
    certificate_pem = forms.CharField(
        label="Certificate (PEM)", required=False, widget=forms.Textarea(attrs={"rows": 6})
    )
    private_key_pem = forms.CharField(
        label="Private key (PEM)",
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 6}),
        help_text="Never shown again, not even when the form has errors.",
    )
    key_password = forms.CharField(
        label="Private key password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Import PEM: the password of the key as given; empty when not encrypted.",
    )
    pkcs12_file = forms.FileField(label="PKCS#12 file", required=False)
    pkcs12_password = forms.CharField(
        label="PKCS#12 password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = CertificateAuthority
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.actor = kwargs.pop("actor", None)
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.errors:
            return data
        mode = data["mode"]
        common = {
            "alias": data["alias"],
            "password": data["password"],
            "overwrite": data.get("overwrite", False),
            "actor": self.actor,
        }
        try:
            if mode == self.MODE_GENERATE:
                if not data.get("dn"):
                    raise ValidationError({"dn": "Give the distinguished name of the new CA."})
                self.instance = ca_generate(
                    dn=data["dn"],
                    key_type=data.get("key_type") or KeyType.EC_P256.value,
                    days=data.get("days") or 730,
                    **common,
                )
            elif mode == self.MODE_PEM:
                if not data.get("certificate_pem") or not data.get("private_key_pem"):
                    raise ValidationError(
                        "Paste both the CA certificate and its private key (PEM)."
                    )
                self.instance = ca_import_pem(
                    certificate_pem=data["certificate_pem"],
                    private_key_pem=data["private_key_pem"],
                    key_password=data.get("key_password") or "",
                    **common,
                )
            else:
                upload = data.get("pkcs12_file")
                if upload is None:
                    raise ValidationError({"pkcs12_file": "Choose the PKCS#12 file."})
                self.instance = ca_import_pkcs12(
                    pkcs12_data=upload.read(),
                    pkcs12_password=data.get("pkcs12_password") or "",
                    **common,
                )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    self.add_error(field if field in self.fields else None, errors)
            else:
                self.add_error(None, exc)
        return data


ADD_FIELDSETS = [
    (None, {"fields": ["mode", "alias", "password", "overwrite"]}),
    ("Generate", {"fields": ["dn", "key_type", "days"]}),
    ("Import PEM", {"fields": ["certificate_pem", "private_key_pem", "key_password"]}),
    ("Import PKCS#12", {"fields": ["pkcs12_file", "pkcs12_password"]}),
]
DETAIL_FIELDS = [
    "alias",
    "active_certificates_display",
    "archived_at",
    "subject_display",
    "issuer_display",
    "serial",
    "not_before",
    "not_after",
    "expires_soon",
    "fingerprint_sha256",
    "key_type",
    "source",
    "created_at",
    "created_by",
    "download_link",
    "certificate_pem",
]


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(SensitivePostAdminMixin, admin.ModelAdmin):
    """Key store: list, add (generate/import), read-only details, certificate download.

    No delete (signing profiles and issued certificates refer to CAs) and never the key.
    """

    sensitive_post_parameters = ("password", "private_key_pem", "key_password", "pkcs12_password")

    list_display = [
        "alias",
        "subject",
        "not_after",
        "expires_soon",
        "active_certificates_display",
        "is_archived",
        "fingerprint_sha256",
        "key_type",
        "source",
    ]
    list_filter = ["source", "key_type", ("archived_at", admin.EmptyFieldListFilter)]
    actions: list[Any] = []  # extended by register_ca_action()
    change_form_template = "admin/signing/certificateauthority/change_form.html"
    search_fields = ["alias", "subject", "fingerprint_sha256"]
    list_select_related = ["created_by"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> Any:
        """Each CA with its count of active certificates, in the changelist's one query."""
        return cas_with_active_counts(super().get_queryset(request))

    @admin.display(description="active certificates", ordering="active_certificates")
    def active_certificates_display(self, obj: CertificateAuthority) -> int:
        return int(getattr(obj, "active_certificates", 0) or 0)

    @admin.display(boolean=True, description="archived", ordering="archived_at")
    def is_archived(self, obj: CertificateAuthority) -> bool:
        return obj.is_archived

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        tools = []
        if object_id.isdigit():
            tools = [(label, reverse(name, args=[int(object_id)])) for label, name in _CA_TOOLS]
        context = {"ca_tools": tools, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            actor = request.user

            class BoundAddForm(CertificateAuthorityAddForm):
                def __init__(self, *args: Any, **kw: Any) -> None:
                    super().__init__(*args, actor=actor, **kw)

            return BoundAddForm
        kwargs["fields"] = []
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ADD_FIELDSETS
        return [(None, {"fields": DETAIL_FIELDS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else DETAIL_FIELDS

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the detail page is read-only; replace a CA by adding with "overwrite"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """The form's clean() already stored the CA through the key-store service."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing related to save."""

    @admin.display(boolean=True, description=f"expires within {CA_EXPIRY_WARNING_DAYS} days")
    def expires_soon(self, obj: CertificateAuthority) -> bool:
        return obj.not_after <= timezone.now() + timedelta(days=CA_EXPIRY_WARNING_DAYS)

    @admin.display(description="subject")
    def subject_display(self, obj: CertificateAuthority) -> str:
        return obj.subject

    @admin.display(description="issuer")
    def issuer_display(self, obj: CertificateAuthority) -> str:
        issuer = ca_certificate(obj).issuer.rfc4514_string()
        return f"{issuer} (self-signed)" if issuer == obj.subject else issuer

    @admin.display(description="download")
    def download_link(self, obj: CertificateAuthority) -> str:
        url = reverse("admin:signing_certificateauthority_download", args=[obj.pk])
        return format_html('<a href="{}">{}.pem</a> (certificate only)', url, obj.alias)

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:pk>/certificate.pem",
                self.admin_site.admin_view(self.download_certificate),
                name="signing_certificateauthority_download",
            )
        ]
        return extra + super().get_urls()

    def download_certificate(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The CA certificate as PEM; the private key is never offered."""
        ca = get_object_or_404(CertificateAuthority, pk=pk)
        if not self.has_view_permission(request, ca):
            raise PermissionDenied
        response = HttpResponse(ca.certificate_pem, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'attachment; filename="{ca.alias}.pem"'
        return response
