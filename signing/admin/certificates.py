"""Admin of issued certificates: read-only, never deleted, revoked with a reason."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from portal.admin import ReadOnlyAdminMixin

from ..models import IssuedCertificate
from ..services import certificates_revoke
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
        "lifecycle",
        "aws_status",
        "aws_thing",
        "aws_observed_at",
    ]
    list_filter = ["status", "aws_status", "profile", "ca"]
    search_fields = [
        "common_name",
        "serial",
        "fingerprint_sha256",
        "aws_certificate_id",
        "device__name",
        "device__station__name",
    ]
    list_select_related = ["device__station", "profile", "ca"]
    show_full_result_count = False
    actions = ["revoke_selected"]
    fields = (
        "serial_colons",
        "common_name",
        "subject",
        "issuer",
        "not_before",
        "not_after",
        "renew_after",
        "renewal_due_at",
        "fingerprint_sha256",
        "device",
        "request",
        "profile",
        "ca",
        "status",
        "lifecycle",
        "first_connected_at",
        "superseded_at",
        "revoked_at",
        "revocation_reason",
        "aws_certificate_id",
        "aws_status",
        "aws_thing",
        "aws_policies_display",
        "aws_observed_at",
        "aws_note",
        "pem_download",
        "certificate_pem",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[IssuedCertificate]:
        # Whether the device holds a newer (or older) active certificate: a renewal that has
        # not proven itself on a connection yet. Two subqueries, no query per row.
        same_device_active = IssuedCertificate.objects.filter(
            device_id=OuterRef("device_id"), status=IssuedCertificate.Status.ACTIVE
        ).exclude(pk=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                newer_active=Exists(
                    same_device_active.filter(created_at__gt=OuterRef("created_at"))
                ),
                older_active=Exists(
                    same_device_active.filter(created_at__lt=OuterRef("created_at"))
                ),
            )
        )

    @admin.display(description="life cycle")
    def lifecycle(self, obj: IssuedCertificate) -> str:
        if obj.status != IssuedCertificate.Status.ACTIVE:
            return obj.get_status_display()
        if getattr(obj, "newer_active", False):
            return "renewed, not yet proven on a connection (this one stays active)"
        if getattr(obj, "older_active", False):
            return "renewal, not yet proven on a connection"
        return "in use" if obj.first_connected_at else "not connected yet"

    @admin.display(description="policies (AWS)")
    def aws_policies_display(self, obj: IssuedCertificate) -> str:
        return ", ".join(obj.aws_policies or []) or "–"

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
