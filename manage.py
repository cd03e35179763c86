#!/usr/bin/env python
"""Django's command-line utility for the fleet onboarding portal."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018  (load settings now: a bad config is one sentence)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(1)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
