"""Admin of the signing app: key store, signing profiles, approval queue, issued certificates.

Importing the modules registers their ModelAdmins.
"""

from . import authorities, certificates, profiles, requests  # noqa: F401
