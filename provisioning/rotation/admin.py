"""Admin of CA rotation: "Rotate CA" and "Retire CA" on a CA's page (and as a changelist
action), the rotations' list with pause/resume, and the rotation's section on its job page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from portal.admin import ReadOnlyAdminMixin
from portal.errors import DomainError
from signing.admin.authorities import register_ca_action, register_ca_tool
from signing.crypto import KEY_TYPE_CHOICES, KeyType
from signing.models import CertificateAuthority
from signing.services import ca_active_certificates

from ..jobs.admin import job_link, register_job_section
from ..jobs.models import Job
from .models import CaRotation
from .retire import ca_retire_start
from .services import NewCa, ca_rotation_start
from .wave import ca_rotation_pause, ca_rotation_resume


class RotateCaForm(forms.Form):
    """The new CA (one from the key store, or generated now) and the wave's pace."""

    to_ca = forms.ModelChoiceField(
        label="New CA from the key store",
        queryset=CertificateAuthority.objects.none(),
        required=False,
        help_text="Leave empty to generate a new CA below.",
    )
    new_alias = forms.CharField(label="Alias of the new CA", max_length=64, required=False)
    dn = forms.CharField(
        label="Distinguished name of the new CA",
        max_length=400,
        required=False,
        help_text="CN=…,O=…,C=… (generate only).",
    )
    key_type = forms.ChoiceField(choices=KEY_TYPE_CHOICES, initial=KeyType.EC_P256.value)
    days = forms.IntegerField(label="Validity (days)", initial=730, min_value=1, max_value=36500)
    password = forms.CharField(
        label="Password of the new CA",
        widget=forms.PasswordInput(render_value=False),
        strip=False,
        help_text="Generate: protects the new key. Existing: unlocks it. Never shown again.",
    )
    rate_per_minute = forms.IntegerField(initial=60, min_value=1, max_value=100_000)
    failure_threshold = forms.IntegerField(initial=5, min_value=1)
    renew_timeout_minutes = forms.IntegerField(initial=15, min_value=1, max_value=10_080)

    def __init__(self, *args: Any, from_ca: CertificateAuthority, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_ca"].queryset = CertificateAuthority.objects.filter(  # type: ignore[attr-defined]
            archived_at__isnull=True
        ).exclude(pk=from_ca.pk)
        self.fields["new_alias"].initial = f"{from_ca.alias}-{timezone.now():%Y%m%d}"

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if not data.get("to_ca") and not data.get("dn"):
            raise forms.ValidationError(
                "Choose the new CA, or give the distinguished name of one to generate."
            )
        if data.get("to_ca") and data.get("dn"):
            raise forms.ValidationError("Either choose a CA or generate one, not both.")
        if data.get("dn") and not data.get("new_alias"):
            self.add_error("new_alias", "Give the alias of the new CA.")
        return data


def _ca_rotation_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    cas = list(queryset[:2])
    if len(cas) != 1:
        modeladmin.message_user(request, "Select exactly one CA to rotate.", messages.WARNING)
        return None
    return HttpResponseRedirect(reverse("admin:provisioning_carotation_rotate", args=[cas[0].pk]))


_ca_rotation_action.short_description = "Rotate CA (register a new CA, renew every device)"  # type: ignore[attr-defined]
_ca_rotation_action.allowed_permissions = ("view",)  # type: ignore[attr-defined]


@admin.register(CaRotation)
class CaRotationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Rotations are records: started from a CA's page, paused and resumed here."""

    list_display = [
        "id",
        "from_ca",
        "to_ca",
        "status",
        "phase",
        "progress",
        "rate_per_minute",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["from_ca", "to_ca", "job"]
    show_full_result_count = False
    fields = (
        "from_ca",
        "to_ca",
        "status",
        "phase",
        "progress",
        "job_page",
        "rate_per_minute",
        "failure_threshold",
        "renew_timeout_minutes",
        "total",
        "aws_ca_certificate_id",
        "created_by",
        "created_at",
        "wave_started_at",
        "paused_at",
        "finished_at",
        "result",
    )
    readonly_fields = fields
    change_form_template = "admin/provisioning/carotation/change_form.html"

    @admin.display(description="progress")
    def progress(self, obj: CaRotation) -> str:
        job = obj.job
        failed = f", {job.progress_failed} failed" if job.progress_failed else ""
        return f"{job.progress_done}/{job.progress_total} renewed{failed}"

    @admin.display(description="job")
    def job_page(self, obj: CaRotation) -> str:
        return job_link(obj.job)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "rotate/<int:ca_pk>/", view(self.rotate_view), name="provisioning_carotation_rotate"
            ),
            path(
                "retire/<int:ca_pk>/", view(self.retire_view), name="provisioning_carotation_retire"
            ),
            path("<int:pk>/pause/", view(self.pause_view), name="provisioning_carotation_pause"),
            path("<int:pk>/resume/", view(self.resume_view), name="provisioning_carotation_resume"),
            *super().get_urls(),
        ]

    def _check_permission(self, request: HttpRequest) -> None:
        if not request.user.has_perm("provisioning.run_ca_rotation"):  # type: ignore[union-attr]
            raise PermissionDenied

    def _page(self, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, **context},
        )

    def rotate_view(self, request: HttpRequest, ca_pk: int) -> HttpResponse:
        self._check_permission(request)
        from_ca = get_object_or_404(CertificateAuthority, pk=ca_pk)
        form = RotateCaForm(request.POST or None, from_ca=from_ca)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            new_ca = None
            if data["dn"]:
                new_ca = NewCa(
                    alias=data["new_alias"],
                    dn=data["dn"],
                    key_type=data["key_type"],
                    days=data["days"],
                )
            try:
                rotation = ca_rotation_start(
                    from_ca=from_ca,
                    to_ca=data["to_ca"],
                    new_ca=new_ca,
                    to_ca_password=data["password"],
                    rate_per_minute=data["rate_per_minute"],
                    failure_threshold=data["failure_threshold"],
                    renew_timeout_minutes=data["renew_timeout_minutes"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, exc.detail)
            else:
                self.message_user(request, f"{rotation} started.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:provisioning_job_change", args=[rotation.job_id])
                )
        return self._page(
            request,
            "admin/provisioning/carotation/rotate_form.html",
            title=f"Rotate CA '{from_ca.alias}'",
            ca=from_ca,
            form=form,
            active=ca_active_certificates(ca=from_ca).count(),
        )

    def retire_view(self, request: HttpRequest, ca_pk: int) -> HttpResponse:
        """A confirmation page that says how many active certificates would break."""
        self._check_permission(request)
        ca = get_object_or_404(CertificateAuthority, pk=ca_pk)
        active = ca_active_certificates(ca=ca).count()
        if request.method == "POST":
            try:
                job = ca_retire_start(
                    ca=ca, force=request.POST.get("force") == "yes", actor=request.user
                )
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, f"{job} started.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:provisioning_job_change", args=[job.pk]))
        return self._page(
            request,
            "admin/provisioning/carotation/retire_confirm.html",
            title=f"Retire CA '{ca.alias}'",
            ca=ca,
            active=active,
        )

    def pause_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._state_change(request, pk, ca_rotation_pause, "paused")

    def resume_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._state_change(request, pk, ca_rotation_resume, "resumed")

    def _state_change(self, request: HttpRequest, pk: int, service: Any, done: str) -> HttpResponse:
        self._check_permission(request)
        rotation = get_object_or_404(CaRotation, pk=pk)
        if request.method == "POST":
            try:
                service(rotation=rotation, actor=request.user)
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, f"{rotation} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(
            request.POST.get("next") or reverse("admin:provisioning_carotation_change", args=[pk])
        )


register_ca_tool("Rotate CA", "admin:provisioning_carotation_rotate")
register_ca_tool("Retire CA", "admin:provisioning_carotation_retire")
register_ca_action(_ca_rotation_action)
register_job_section(Job.Kind.CA_ROTATION, "admin/provisioning/job/ca_rotation_section.html")
