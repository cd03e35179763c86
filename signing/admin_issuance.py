"""Admin of the signing service: signing profiles, the approval queue, issued certificates.

Imported from ``signing/admin.py`` (whose top holds the key-store admin). Every action is a
thin door into one service of :mod:`signing.issuance`.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from portal.admin import ReadOnlyAdminMixin

from .crypto import KEY_TYPE_CHOICES
from .issuance import (
    ca_expiry_warnings,
    certificates_revoke,
    onboarding_requests_approve,
    onboarding_requests_reject,
    signing_profile_save,
    signing_profile_validate,
)
from .models import (
    IssuedCertificate,
    OnboardingRequest,
    SigningProfile,
    default_accepted_key_types,
)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


class _CaExpiryWarningMixin:
    """Show CA-expiry warnings (within 90 days) on the changelist."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "GET":
            for warning in ca_expiry_warnings():
                messages.warning(request, warning)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


class SigningProfileForm(forms.ModelForm):
    """The CA password is write-only: never rendered, blank on change keeps the stored one."""

    ca_password_input = forms.CharField(
        label="CA password", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Checked against the CA's private key. Leave blank to keep the stored one.",
    )
    accepted_key_types = forms.MultipleChoiceField(
        choices=KEY_TYPE_CHOICES, widget=forms.CheckboxSelectMultiple,
        # A declared field does not inherit the model default: without this the add form
        # starts with no box ticked and refuses to save until someone ticks them by hand.
        initial=default_accepted_key_types,
        help_text="Device key types this profile signs (RSA below 2048 bits never).",
    )

    class Meta:
        model = SigningProfile
        fields = [
            "name", "is_default", "ca", "cn_template", "country", "organization",
            "organizational_unit", "locality", "state", "dn_qualifier", "serial_number",
            "validity_days", "renew_at_percent", "renewal_jitter_percent",
            "accepted_key_types", "renewal_policy",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None and not data.get("ca_password_input"):
            self.add_error("ca_password_input", "Enter the CA's password.")
        return data

    def _post_clean(self) -> None:
        """After the instance holds the form's values: the service's rules (CA password too)."""
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            signing_profile_validate(profile=self.instance,
                                     ca_password=self.cleaned_data.get("ca_password_input") or None)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                target = "ca_password_input" if field == "ca_password" else field
                for error in errors:
                    self.add_error(target if target in self.fields else None, error)


@admin.register(SigningProfile)
class SigningProfileAdmin(_CaExpiryWarningMixin, admin.ModelAdmin):
    form = SigningProfileForm
    list_display = ["name", "ca", "cn_template", "country", "validity_days", "renewal_policy",
                    "is_default"]
    list_select_related = ["ca"]
    search_fields = ["name", "ca__alias"]
    fieldsets = [
        (None, {"fields": ["name", "is_default", "ca", "ca_password_input"]}),
        ("Subject", {"fields": ["cn_template", "country", "organization", "organizational_unit",
                                "locality", "state", "dn_qualifier", "serial_number"],
                     "description": "The subject of every certificate comes from here, never "
                                    "from the CSR. CN template placeholders: {station}, "
                                    "{device}, {serial}; it must contain {device} and "
                                    "{station} or {serial}."}),
        ("Validity and renewal", {"fields": ["validity_days", "renew_at_percent",
                                             "renewal_jitter_percent", "renewal_policy"]}),
        ("Keys", {"fields": ["accepted_key_types"]}),
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # profiles are referenced by requests and certificates

    def save_model(self, request: HttpRequest, obj: SigningProfile, form: Any,
                   change: bool) -> None:
        signing_profile_save(profile=obj,
                             ca_password=form.cleaned_data.get("ca_password_input") or None,
                             actor=request.user)


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="The station's operator sees this reason.",
    )


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Recorded with the certificate.")


def _reason_form_response(modeladmin: admin.ModelAdmin, request: HttpRequest,
                          queryset: QuerySet, *, form: forms.Form, action: str,
                          title: str, button: str) -> TemplateResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title, "objects": queryset[:50], "count": queryset.count(),
        "form": form, "action": action, "button": button,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/signing/reason_form.html", context)


@admin.register(OnboardingRequest)
class OnboardingRequestAdmin(_CaExpiryWarningMixin, admin.ModelAdmin):
    """The approval queue."""

    list_display = ["id", "station", "device_name", "short_comment", "key_type",
                    "short_fingerprint", "age", "is_renewal", "status", "decided"]
    list_filter = ["status", "is_renewal", "key_type", "profile"]
    search_fields = ["station__name", "device__name", "public_key_fingerprint", "comment"]
    list_select_related = ["station", "device", "profile", "decided_by"]
    show_full_result_count = False
    list_per_page = 100
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = ("station", "device", "profile", "comment", "key_type",
                       "public_key_fingerprint", "is_renewal", "status", "reason", "created_at",
                       "decided_at", "decided_by", "decided_by_label", "issued_at", "csr_pem")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # stations submit requests through the API

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("signing.approve_onboardingrequest")

    @admin.display(description="device", ordering="device__name")
    def device_name(self, obj: OnboardingRequest) -> str:
        return obj.device.name

    @admin.display(description="comment")
    def short_comment(self, obj: OnboardingRequest) -> str:
        return Truncator(obj.comment).chars(40)

    @admin.display(description="public key SHA-256")
    def short_fingerprint(self, obj: OnboardingRequest) -> str:
        fp = obj.public_key_fingerprint
        return f"{fp[:16]}…" if len(fp) > 16 else fp

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: OnboardingRequest) -> str:
        seconds = int((timezone.now() - obj.created_at).total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{seconds // size} {unit}"
        return f"{seconds} s"

    @admin.display(description="decided")
    def decided(self, obj: OnboardingRequest) -> str:
        if obj.decided_at is None:
            return "—"
        who = obj.decided_by.get_username() if obj.decided_by else obj.decided_by_label
        return f"{who or 'system'}, {obj.decided_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Approve selected requests", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        approved = onboarding_requests_approve(ids=ids, actor=request.user)
        skipped = len(ids) - len(approved)
        self.message_user(request, f"Approved {_plural(len(approved), 'request')}; signing "
                                   "runs in the background.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{_plural(skipped, 'request')} skipped (not pending).",
                              messages.WARNING)

    @admin.action(description="Reject selected requests (with a reason)…",
                  permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> Any:
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            ids = list(queryset.values_list("pk", flat=True))
            rejected = onboarding_requests_reject(ids=ids, reason=form.cleaned_data["reason"],
                                                  actor=request.user)
            self.message_user(request, f"Rejected {_plural(len(rejected), 'request')}.",
                              messages.SUCCESS)
            if len(ids) > len(rejected):
                self.message_user(
                    request, f"{_plural(len(ids) - len(rejected), 'request')} skipped "
                             "(not pending).", messages.WARNING)
            return None
        return _reason_form_response(self, request, queryset, form=form,
                                     action="reject_selected",
                                     title="Reject onboarding requests", button="Reject")


@admin.register(IssuedCertificate)
class IssuedCertificateAdmin(ReadOnlyAdminMixin, _CaExpiryWarningMixin, admin.ModelAdmin):
    """Read-only, never deleted: revoke instead."""

    list_display = ["common_name", "serial_colons", "device", "status", "not_before",
                    "not_after", "renew_after"]
    list_filter = ["status", "profile", "ca"]
    search_fields = ["common_name", "serial", "fingerprint_sha256", "device__name",
                     "device__station__name"]
    list_select_related = ["device__station", "profile", "ca"]
    show_full_result_count = False
    actions = ["revoke_selected"]
    fields = ("serial_colons", "common_name", "subject", "issuer", "not_before", "not_after",
              "renew_after", "renewal_due_at", "fingerprint_sha256", "device", "request",
              "profile", "ca", "status", "superseded_at", "revoked_at", "revocation_reason",
              "pem_download", "certificate_pem")
    readonly_fields = fields


    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("signing.revoke_issuedcertificate")

    @admin.display(description="serial", ordering="serial")
    def serial_colons(self, obj: IssuedCertificate) -> str:
        return obj.serial

    @admin.display(description="PEM")
    def pem_download(self, obj: IssuedCertificate) -> str:
        url = reverse("admin:signing_issuedcertificate_pem", args=[obj.pk])
        return format_html('<a href="{}">Download {}.pem</a>', url, obj.common_name)

    def get_urls(self) -> list:
        urls = [path("<int:pk>/pem/", self.admin_site.admin_view(self.pem_view),
                     name="signing_issuedcertificate_pem")]
        return urls + super().get_urls()

    def pem_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        cert = get_object_or_404(IssuedCertificate, pk=pk)
        response = HttpResponse(cert.certificate_pem, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'attachment; filename="{cert.common_name}.pem"'
        return response

    @admin.action(description="Revoke selected certificates (with a reason)…",
                  permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> Any:
        form = RevokeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = certificates_revoke(ids=list(queryset.values_list("pk", flat=True)),
                                        reason=form.cleaned_data["reason"], actor=request.user)
            self.message_user(request, f"Revoked {_plural(count, 'certificate')}.",
                              messages.SUCCESS)
            return None
        return _reason_form_response(self, request, queryset, form=form,
                                     action="revoke_selected",
                                     title="Revoke certificates", button="Revoke")
