"""Admin of issued certificates: read-only, never deleted, revoked with a reason."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from portal.admin import FleetListMixin, ReadOnlyAdminMixin, is_changelist

from ..models import IssuedCertificate
from ..services import REVOCATION_REASONS, certificates_force_renewal, certificates_revoke
from .common import CaExpiryWarningMixin, plural, reason_form_response

_HEX = re.compile(r"^[0-9A-F]+$")


def colon_hex(term: str) -> str:
    """``0a1b2c`` / ``0A:1B:2C`` -> ``0A:1B:2C`` (how serials and fingerprints are stored);
    an odd number of digits keeps the half byte at the end (``0A:1`` prefixes ``0A:1B``)."""
    digits = term.replace(":", "").replace(" ", "").upper()
    if not digits or not _HEX.match(digits):
        return ""
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


class AwsStatusFilter(admin.SimpleListFilter):
    """The certificate's status in AWS IoT, from a fixed list: a DISTINCT over every
    certificate (what a plain field filter runs) would grow with the fleet."""

    title = "status in AWS"
    parameter_name = "aws_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("-", "not observed"), *((s, s) for s in IssuedCertificate.AWS_STATUSES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(aws_status="" if value == "-" else value)


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(
        choices=[(r, r) for r in REVOCATION_REASONS],
        initial="keyCompromise",
        help_text="RFC 5280 reason. AWS IoT sets the certificate REVOKED (final) and detaches "
        "its policies within a minute.",
    )
    comment = forms.CharField(
        max_length=200, required=False, help_text="Recorded with the certificate."
    )


def _with_renewal_state(qs: QuerySet[IssuedCertificate]) -> QuerySet[IssuedCertificate]:
    """Whether the device holds a newer (or older) active certificate: a renewal that has
    not proven itself on a connection yet. Two subqueries, no query per row."""
    same_device_active = IssuedCertificate.objects.filter(
        device_id=OuterRef("device_id"), status=IssuedCertificate.Status.ACTIVE
    ).exclude(pk=OuterRef("pk"))
    return qs.annotate(
        newer_active=Exists(same_device_active.filter(created_at__gt=OuterRef("created_at"))),
        older_active=Exists(same_device_active.filter(created_at__lt=OuterRef("created_at"))),
    )


@admin.register(IssuedCertificate)
class IssuedCertificateAdmin(
    FleetListMixin, ReadOnlyAdminMixin, CaExpiryWarningMixin, admin.ModelAdmin
):
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
    list_filter = ["status", AwsStatusFilter, "profile", "ca"]
    # Searched by get_search_results: CN contains (trigram index on PostgreSQL), serial and
    # fingerprint by exact or prefix match (with or without colons, any case), AWS id exact.
    search_fields = ["common_name", "serial", "fingerprint_sha256"]
    search_help_text = (
        "Common Name (contains), serial or SHA-256 fingerprint (prefix, hex), AWS certificate id."
    )
    # The list shows the device (with its station's name); profile and CA only on the page.
    list_select_related = ["device__station"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[IssuedCertificate]:
        # The device's key password is an encrypted field that decrypts on load (per row);
        # the list shows neither it nor the PEM.
        qs = _with_renewal_state(super().get_queryset(request))
        if is_changelist(request):
            qs = qs.defer("certificate_pem", "device__key_password")
        return qs

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
        "lifecycle",
        "first_connected_at",
        "superseded_at",
        "revoked_at",
        "revocation_reason",
        "revocation_comment",
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

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q(common_name__icontains=term) | Q(aws_certificate_id=term.lower())
        hex_prefix = colon_hex(term)
        if hex_prefix:
            query |= Q(serial__startswith=hex_prefix) | Q(fingerprint_sha256__startswith=hex_prefix)
        return queryset.filter(query), False

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
                comment=form.cleaned_data["comment"],
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
