"""URL routes: the admin, the versioned API, health and the Prometheus metrics."""

import sys

from django.contrib import admin
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.views import defaults

from .api import api
from .cockpit.metrics import metrics_view

admin.site.site_header = "Fleet onboarding portal"
admin.site.site_title = "Fleet onboarding portal"
admin.site.index_title = "Stations, certificates and AWS IoT"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def api_not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Any path under /api/v1/ that no endpoint serves: the API's error shape, not HTML."""
    return JsonResponse(
        {"code": "not_found", "detail": "There is no API endpoint at this path."}, status=404
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 handler. A database that dropped the connection (restarted, connections cut)
    is a passing outage, not a bug: 503 with Retry-After (the request's transaction was
    rolled back; the next request reconnects); JSON in the API's error shape under /api/."""
    exc = sys.exc_info()[1]
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return defaults.server_error(request)
    detail = "The database is not reachable right now; nothing was changed. Retry shortly."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"code": "database_unavailable", "detail": detail}, status=503)
    else:
        response = HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "5"
    return response


handler500 = server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/(?P<rest>.*)$", api_not_found),
    path("healthz", healthz),
    path("metrics", metrics_view, name="metrics"),
]
