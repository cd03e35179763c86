"""Template tag of the admin index: the cockpit dashboard."""

from __future__ import annotations

from typing import Any

from django import template

from ..dashboard import dashboard_context

register = template.Library()


@register.inclusion_tag("cockpit/dashboard.html")
def cockpit_dashboard() -> dict[str, Any]:
    return dashboard_context()
