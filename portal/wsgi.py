"""WSGI entry point (gunicorn portal.wsgi). Refuses to serve with a wrong encryption key."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

from portal.checks import require_usable_encryption_key  # noqa: E402  (needs Django set up)

require_usable_encryption_key()
