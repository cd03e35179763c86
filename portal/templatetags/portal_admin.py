"""Template tags for the admin: the health warnings shown on the index page."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.health import admin_warnings

register = template.Library()


@register.simple_tag
def portal_warnings() -> SafeString | str:
    """Render the health problems as the admin's own warning messages."""
    warnings = admin_warnings()
    if not warnings:
        return ""
    items = format_html_join("", '<li class="warning">{}</li>', ((w,) for w in warnings))
    return format_html('<ul class="messagelist portal-health">{}</ul>', items)
