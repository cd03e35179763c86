"""Admin for fleet provisioning by claim: parameters, the setup job, the audited bundle."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from portal.admin import SensitivePostAdminMixin
from portal.errors import DomainError
from portal.handoff import handoffs_reset, handoffs_tell_admin

from .bundle import claim_bundle_build
from .models import ClaimSetup
from .services import claim_setup_save, claim_setup_start

# What the setup job fills in: shown, never edited.
_READ_ONLY = [
    "status",
    "job",
    "endpoint",
    "template_arn",
    "template_version_id",
    "claim_certificate_id",
    "claim_certificate_arn",
    "has_claim_key",
    "ready_at",
    "download_count",
    "last_downloaded_at",
    "created_at",
]


@admin.register(ClaimSetup)
class ClaimSetupAdmin(SensitivePostAdminMixin, admin.ModelAdmin):
    sensitive_post_parameters = ("role_arn",)
    list_display = [
        "template_name",
        "region",
        "status",
        "endpoint",
        "claim_certificate_short",
        "ready_at",
        "download_count",
        "last_downloaded_at",
    ]
    list_filter = ["status", "region"]
    list_select_related = ["access_key", "job"]
    search_fields = ["template_name"]
    show_full_result_count = False
    fields = [
        "template_name",
        "region",
        "access_key",
        "role_arn",
        "thing_name_prefix",
        "thing_type",
        *_READ_ONLY,
    ]
    readonly_fields = _READ_ONLY
    actions = ["run_setup", "download_bundle"]

    @admin.display(description="claim certificate")
    def claim_certificate_short(self, obj: ClaimSetup) -> str:
        return f"{obj.claim_certificate_id[:12]}…" if obj.claim_certificate_id else "-"

    @admin.display(description="claim key stored", boolean=True)
    def has_claim_key(self, obj: ClaimSetup) -> bool:
        return obj.has_claim_key

    def save_model(self, request: HttpRequest, obj: ClaimSetup, form: Any, change: bool) -> None:
        try:
            saved = claim_setup_save(
                template_name=obj.template_name,
                region=obj.region,
                access_key_id=obj.access_key.access_key_id,
                role_arn=obj.role_arn,
                thing_name_prefix=obj.thing_name_prefix,
                thing_type=obj.thing_type,
                actor=request.user,
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        obj.pk = saved.pk

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the claim certificate lives on in AWS: rotate it, do not forget it

    @admin.action(
        description="Run the claim setup job for the selected templates", permissions=["change"]
    )
    def run_setup(self, request: HttpRequest, queryset: QuerySet[ClaimSetup]) -> None:
        count = 0
        handoffs_reset()
        for setup in queryset:
            claim_setup_start(setup=setup, actor=request.user)
            count += 1
        self.message_user(request, f"Started {count} claim setup job{'s' if count != 1 else ''}.")
        handoffs_tell_admin(self, request)

    def has_download_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("provisioning.download_claim_bundle")

    @admin.action(
        description="Download the claim bundle (claim certificate and key; audited)",
        permissions=["download"],
    )
    def download_bundle(
        self, request: HttpRequest, queryset: QuerySet[ClaimSetup]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one claim setup to download.", messages.WARNING
            )
            return None
        setup = queryset.get()
        try:
            data = claim_bundle_build(setup=setup, actor=request.user)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return None
        response = HttpResponse(data, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="claim-{setup.template_name}.zip"'
        response["Cache-Control"] = "no-store"
        return response
