"""What the signing admins share: counted messages, CA-expiry warnings, the reason form page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from ..services import ca_expiry_warnings


def plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


class CaExpiryWarningMixin:
    """Show CA-expiry warnings (within 90 days) on the changelist."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "GET":
            for warning in ca_expiry_warnings():
                messages.warning(request, warning)
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


def reason_form_response(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    form: forms.Form,
    action: str,
    title: str,
    button: str,
) -> TemplateResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "objects": queryset[:50],
        "count": queryset.count(),
        "form": form,
        "action": action,
        "button": button,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/signing/reason_form.html", context)
