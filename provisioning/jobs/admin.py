"""The generic job page: job list, a read-only job page with progress bar and live log.

Live log: the page polls ``<job id>/status.json?after=<last line id>`` every two seconds (a
few lines of JS in ``admin/provisioning/job/change_form.html``) and stops once the job has
finished; without JS a meta refresh reloads the page while the job runs.

Extending the job page (e.g. fleet install's per-station table), two hooks:

* a template section for one job kind, rendered below the log with ``{"job": job,
  "request": request}`` in its context::

      from provisioning.jobs.admin import register_job_section
      register_job_section(Job.Kind.FLEET_INSTALL, "admin/provisioning/job/fleet_stations.html")

  (call it from your app's ``admin.py``; the section may poll its own JSON endpoint);
* a read-only inline of a model with a ForeignKey to Job (shown for every kind; use
  ``has_view_permission`` / ``get_queryset`` to show it only for your kind)::

      register_job_inline(FleetInstallStationInline)
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from portal.admin import ReadOnlyAdminMixin

from .models import Job, JobLogLine

_JOB_SECTIONS: dict[str, list[str]] = {}
LOG_LINES_PER_POLL = 500


def register_job_section(kind: str, template_name: str) -> None:
    """Render ``template_name`` below the log on the page of every job of ``kind``."""
    sections = _JOB_SECTIONS.setdefault(str(kind), [])
    if template_name not in sections:
        sections.append(template_name)


def register_job_inline(inline: type[admin.options.InlineModelAdmin]) -> None:
    """Show ``inline`` (a model with a ForeignKey to Job) on the job page, read-only."""
    if inline not in JobAdmin.inlines:
        JobAdmin.inlines = (*JobAdmin.inlines, inline)  # type: ignore[assignment]


def job_status_payload(job: Job, *, after: int = 0) -> dict[str, Any]:
    """What the job page's poller needs: status, counters and the log lines after ``after``."""
    lines = list(
        JobLogLine.objects.filter(job=job, id__gt=after).order_by("id")[:LOG_LINES_PER_POLL]
    )
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "is_finished": job.is_finished,
        "percent": job.percent,
        "done": job.progress_done,
        "failed": job.progress_failed,
        "total": job.progress_total,
        "result": job.result,
        "error_code": job.error_code,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "lines": [
            {
                "id": line.pk,
                "at": line.at.strftime("%H:%M:%S"),
                "level": line.level,
                "message": line.message,
            }
            for line in lines
        ],
    }


# What the changelist shows of a job, and the change page first.
COLUMNS = (
    "kind",
    "title",
    "status",
    "progress",
    "actor",
    "created_at",
    "started_at",
    "finished_at",
)


@admin.register(Job)
class JobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Jobs are records: no add, no edit, no delete; the page shows progress and the log."""

    list_display = ["id", *COLUMNS]
    list_display_links = ["id", "title"]
    list_filter = ["kind", "status"]
    search_fields = ["title", "result", "error_code"]
    list_select_related = ["actor"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    fields = (*COLUMNS, "result", "error_code")
    readonly_fields = fields
    change_form_template = "admin/provisioning/job/change_form.html"
    inlines = ()  # type: ignore[assignment]  # extended by register_job_inline()

    @admin.display(description="progress")
    def progress(self, obj: Job) -> str:
        failed = f", {obj.progress_failed} failed" if obj.progress_failed else ""
        return f"{obj.progress_done}/{obj.progress_total} done{failed} ({obj.percent} %)"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/status.json",
                self.admin_site.admin_view(self.status_json),
                name="provisioning_job_status",
            ),
            *super().get_urls(),
        ]

    def status_json(self, request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(Job, pk=pk)
        if not self.has_view_permission(request, job):
            return JsonResponse(
                {"code": "forbidden", "detail": "You may not view jobs."}, status=403
            )
        try:
            after = max(0, int(request.GET.get("after", "0")))
        except ValueError:
            return JsonResponse(
                {"code": "bad_after", "detail": "'after' must be a log line id."}, status=400
            )
        return JsonResponse(job_status_payload(job, after=after))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = get_object_or_404(Job, pk=object_id)
        context = {
            "job": job,
            "job_lines": list(job.log_lines.order_by("id")[:5000]),
            "job_status_url": reverse("admin:provisioning_job_status", args=[job.pk]),
            "job_sections": self._sections(job, request),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _sections(self, job: Job, request: HttpRequest) -> SafeString:
        html = [
            render_to_string(name, {"job": job, "request": request}, request=request)
            for name in _JOB_SECTIONS.get(job.kind, [])
        ]
        return mark_safe("".join(html))  # noqa: S308 - rendered templates, autoescaped


def job_link(job: Job | None) -> str:
    """A link to the job page, for other admins' read-only fields."""
    if job is None:
        return "-"
    url = reverse("admin:provisioning_job_change", args=[job.pk])
    return format_html('<a href="{}">{} ({})</a>', url, job, job.get_status_display())
