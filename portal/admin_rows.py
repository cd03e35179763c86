"""The rows of a fleet-sized changelist, rendered as Django's admin renders them, with the
work that is the same for every row done once per column.

Django's ``items_for_result`` looks up, per cell, what never changes down a column: the
empty-value text, the CSS classes, whether the cell links, the field's choices as a dict,
the date format of the active language, and, per row, it reverses the change URL and
resolves it again to merge the preserved filters. On a 100-row page of certificates that
was a third of the page's time. Here each column is prepared once per page and each cell
costs a lookup and a format; the HTML is the same, cell for cell (the tests compare both).

Lists Django renders differently (editable lists, popups, a ``to_field``) go through
Django's own code unchanged.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from django.contrib.admin.templatetags.admin_list import (  # type: ignore[attr-defined]
    ResultList,
    _coerce_field_name,
    result_headers,
    result_hidden_fields,
    results,
)
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, lookup_field
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models.options import Options
from django.urls import NoReverseMatch
from django.utils import dateformat, formats
from django.utils.html import conditional_escape, escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime  # type: ignore[attr-defined]

#: Stands for the primary key in a change URL prepared once per page.
PK_PLACEHOLDER = "0pk0placeholder0"


class _Dates:
    """``formats.localize`` of dates and datetimes with the active language's formats looked
    up once (the same functions Django calls per cell)."""

    def __init__(self) -> None:
        self.datetime_format = formats.get_format("DATETIME_FORMAT")
        self.date_format = formats.get_format("DATE_FORMAT")
        self.time_format = formats.get_format("TIME_FORMAT")

    def localize(self, value: Any) -> str:
        if isinstance(value, datetime.datetime):
            return dateformat.format(template_localtime(value), self.datetime_format)
        if isinstance(value, datetime.date):
            return dateformat.format(value, self.date_format)
        if isinstance(value, datetime.time):
            return dateformat.time_format(value, self.time_format)
        return str(formats.localize(value))


class _Column:
    """One ``list_display`` entry, prepared for a page: how each of its cells is written."""

    def __init__(self, cl: ChangeList, index: int, name: Any, is_link: bool, dates: _Dates):
        self.name = name
        self.model_admin = cl.model_admin
        self.is_link = is_link
        self.dates = dates
        self.base_classes = [f"field-{_coerce_field_name(name, index)}"]
        self.empty = cl.model_admin.get_empty_value_display()
        self.field_kind: str | None = None  # decided from the first cell: field columns only
        self.choices: dict[Any, Any] | None = None
        self.static_classes: list[str] | None = None
        self.value_empty: SafeString | str = self.empty
        self.boolean = False

    def _prepare(self, field: models.Field | None, attr: Any) -> None:
        """What the first cell tells about the whole column (Django decides it per cell from
        the same field and attribute, which are the same down a column)."""
        self.value_empty = getattr(attr, "empty_value_display", self.empty)
        if field is None or field.auto_created:
            self.field_kind = "value"
            boolean = getattr(attr, "boolean", False)
            if isinstance(attr, property) and hasattr(attr, "fget"):
                boolean = getattr(attr.fget, "boolean", False)
            self.boolean = bool(boolean)
            self.static_classes = (
                ["action-checkbox"] if self.name == "action_checkbox" else self.base_classes
            )
            return
        if isinstance(field.remote_field, models.ManyToOneRel):
            self.field_kind = "relation"
        elif getattr(field, "flatchoices", None):
            try:
                # Labels as text once (lazy translations resolve in the active language).
                self.choices = {value: str(label) for value, label in field.flatchoices}
                self.field_kind = "choices"
            except TypeError:
                self.field_kind = "field"
        elif isinstance(field, models.DateTimeField | models.DateField | models.TimeField):
            self.field_kind = "date"
        else:
            self.field_kind = "field"
        nowrap = isinstance(field, models.DateField | models.TimeField | models.ForeignKey)
        self.static_classes = [*self.base_classes, "nowrap"] if nowrap else self.base_classes

    def cell(self, result: models.Model) -> tuple[Any, list[str]]:
        """The cell's content (escaped when written) and its CSS classes."""
        try:
            field, attr, value = lookup_field(self.name, result, self.model_admin)
        except ObjectDoesNotExist:
            return self.empty, self.base_classes
        if self.field_kind is None:
            self._prepare(field, attr)
        assert self.static_classes is not None
        if isinstance(value, str) and value.strip() == "":
            value = ""
        kind = self.field_kind
        if kind == "value":
            if self.boolean or not isinstance(value, datetime.date | datetime.time):
                return display_for_value(value, self.value_empty, self.boolean), self.static_classes
            return self.dates.localize(value), [*self.static_classes, "nowrap"]
        assert field is not None
        if kind == "relation":
            related = getattr(result, field.name)
            return (self.value_empty if related is None else related), self.static_classes
        if kind == "choices":
            assert self.choices is not None
            try:
                return self.choices.get(value, self.value_empty), self.static_classes
            except TypeError:  # an unhashable value: Django's own comparison
                pass
        elif kind == "date":
            if value in field.empty_values:
                return self.value_empty, self.static_classes
            return self.dates.localize(value), self.static_classes
        shown = display_for_field(value, field, self.value_empty, avoid_link=self.is_link)
        return shown, self.static_classes


def _link_columns(cl: ChangeList) -> list[bool]:
    """Per column, whether its cell links to the change page (Django's rule)."""
    out, first = [], True
    for name in cl.list_display:
        if cl.list_display_links is None:
            linked = False
        elif first and not cl.list_display_links:
            linked = True
        else:
            linked = name in cl.list_display_links
        if linked:
            first = False
        out.append(linked)
    return out


class FleetChangeList(ChangeList):
    """Django's ChangeList with the change URL reversible for a given primary key."""

    def url_for_result_pk(self, pk: Any) -> str:
        # Django's url_for_result reads only the row's primary key attribute.
        row = SimpleNamespace(**{self.pk_attname: pk})
        return self.url_for_result(row)  # type: ignore[arg-type]


def _change_url(cl: FleetChangeList) -> Callable[[models.Model], str | None]:
    """The escaped change URL of a row, preserved filters included, or None where the admin
    has no change page. Integer keys fill a URL prepared once; others take Django's path."""
    context: dict[str, Options[Any] | str] = {
        "preserved_filters": cl.preserved_filters,
        "opts": cl.opts,
    }
    try:
        template = escape(add_preserved_filters(context, cl.url_for_result_pk(PK_PLACEHOLDER)))
    except NoReverseMatch:
        return lambda result: None
    attname = cl.pk_attname

    def url(result: models.Model) -> str | None:
        pk = getattr(result, attname)
        if isinstance(pk, int):
            return template.replace(PK_PLACEHOLDER, str(pk))
        return escape(add_preserved_filters(context, cl.url_for_result(result)))

    return url


def fleet_results(cl: ChangeList) -> Iterator[ResultList]:
    """The page's rows as Django's ``results`` yields them."""
    if (
        getattr(cl, "formset", None)
        or cl.is_popup
        or cl.to_field
        or not isinstance(cl, FleetChangeList)
    ):
        yield from results(cl)
        return
    dates = _Dates()
    links = _link_columns(cl)
    columns = [
        _Column(cl, index, name, links[index], dates) for index, name in enumerate(cl.list_display)
    ]
    change_url = _change_url(cl)
    for result in cl.result_list:
        items = []
        is_first_link = True
        for column in columns:
            shown, classes = column.cell(result)
            html: str = conditional_escape(shown)
            attributes = f' class="{" ".join(classes)}"'
            if column.is_link:
                tag = "th" if is_first_link else "td"
                is_first_link = False
                url = change_url(result)
                if url is not None:
                    html = f'<a href="{url}">{html}</a>'
                items.append(mark_safe(f"<{tag}{attributes}>{html}</{tag}>"))
            else:
                items.append(mark_safe(f"<td{attributes}>{html}</td>"))
        yield ResultList(None, items)


def fleet_result_list(cl: ChangeList) -> dict[str, Any]:
    """The context of ``admin/change_list_results.html``, as Django's ``result_list`` tag
    builds it, with the rows from :func:`fleet_results`."""
    headers = list(result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": list(fleet_results(cl)),
    }
