"""The "Decommission" action on stations, with a confirmation page listing every change.

A mixin for the Station admin (``provisioning.fleet.admin.FleetStationAdmin`` uses it):
devices, where the Station admin lives, imports nothing above it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import ngettext

from devices.models import Station
from portal.errors import DomainError

from .decommission import station_decommission


class DecommissionForm(forms.Form):
    delete_things = forms.BooleanField(
        required=False, label="Also delete the devices' things in AWS"
    )


class StationDecommissionMixin:
    """Adds ``decommission_stations`` (needs change on stations and the revoke permission)."""

    def has_decommission_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(
            user.has_perm("devices.change_station")
            and user.has_perm("signing.revoke_issuedcertificate")
        )

    @admin.action(description="Decommission selected stations…", permissions=["decommission"])
    def decommission_stations(
        self, request: HttpRequest, queryset: QuerySet[Station]
    ) -> HttpResponse | None:
        model_admin: Any = self
        form = DecommissionForm(request.POST if "apply" in request.POST else None)
        stations = list(queryset.order_by("name"))
        if "apply" in request.POST and form.is_valid():
            done = 0
            for station in stations:
                try:
                    station_decommission(
                        station=station,
                        delete_things=form.cleaned_data["delete_things"],
                        actor=request.user,
                    )
                except DomainError as exc:
                    model_admin.message_user(request, f"{station}: {exc.detail}", messages.ERROR)
                    continue
                done += 1
            model_admin.message_user(
                request,
                ngettext(
                    "Decommissioned %(n)d station; AWS carries the changes out shortly.",
                    "Decommissioned %(n)d stations; AWS carries the changes out shortly.",
                    done,
                )
                % {"n": done},
                messages.SUCCESS,
            )
            return None
        delete_things = request.POST.get("delete_things") == "on"
        plans = [
            station_decommission(station=s, delete_things=delete_things, dry_run=True)
            for s in stations[:50]
        ]
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Decommission stations",
            "count": len(stations),
            "plans": plans,
            "revoke_count": sum(len(p.revoke) for p in plans),
            "form": form,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "opts": model_admin.model._meta,
        }
        return TemplateResponse(
            request, "admin/provisioning/station_decommission_confirm.html", context
        )
