"""Admin of issued certificates: read-only, never deleted, revoked with a reason."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from portal.admin import ReadOnlyAdminMixin

from ..models import IssuedCertificate
from ..services import certificates_force_renewal, certificates_revoke
from .common import CaExpiryWarningMixin, plural, reason_form_response


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Recorded with the certificate.")


@admin.register(IssuedCertificate)
class IssuedCertificateAdmin(ReadOnlyAdminMixin, CaExpiryWarningMixin, admin.ModelAdmin):
    """Read-only, never deleted: revoke instead."""

    list_display = [
        "common_name",
        "serial_colons",
        "device",
        "status",
        "not_before",
        "not_after",
        "renew_after",
    ]
    list_filter = ["status", "profile", "ca"]
    search_fields = [
        "common_name",
        "serial",
        "fingerprint_sha256",
        "device__name",
        "device__station__name",
    ]
    list_select_related = ["device__station", "profile", "ca"]
    show_full_result_count = False
    actions = ["revoke_selected", "force_renewal"]
    fields = (
        "serial_colons",
        "common_name",
        "subject",
        "issuer",
        "not_before",
        "not_after",
        "renew_after",
        "renewal_due_at",
        "renewal_forced_at",
        "fingerprint_sha256",
        "device",
        "request",
        "profile",
        "ca",
        "status",
        "superseded_at",
        "revoked_at",
        "revocation_reason",
        "pem_download",
        "certificate_pem",
    )
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
        urls = [
            path(
                "<int:pk>/pem/",
                self.admin_site.admin_view(self.pem_view),
                name="signing_issuedcertificate_pem",
            )
        ]
        return urls + super().get_urls()

    def pem_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        cert = get_object_or_404(IssuedCertificate, pk=pk)
        response = HttpResponse(cert.certificate_pem, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'attachment; filename="{cert.common_name}.pem"'
        return response

    @admin.action(
        description="Revoke selected certificates (with a reason)…", permissions=["revoke"]
    )
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> Any:
        form = RevokeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = certificates_revoke(
                ids=list(queryset.values_list("pk", flat=True)),
                reason=form.cleaned_data["reason"],
                actor=request.user,
            )
            self.message_user(request, f"Revoked {plural(count, 'certificate')}.", messages.SUCCESS)
            return None
        return reason_form_response(
            self,
            request,
            queryset,
            form=form,
            action="revoke_selected",
            title="Revoke certificates",
            button="Revoke",
        )

    @admin.action(description="Force renewal (before the renewal point)")
    def force_renewal(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = certificates_force_renewal(
            ids=list(queryset.values_list("pk", flat=True)), actor=request.user
        )
        self.message_user(
            request,
            f"Forced the renewal of {plural(count, 'certificate')}; their stations renew at the "
            "next configuration poll.",
            messages.SUCCESS,
        )
