"""The operator's cockpit: the admin dashboard, alerts and the Prometheus metrics.

It reads every app, so it sits in the portal's top layer (apps never import it). What it
shows comes from providers registered in :mod:`portal.cockpit.registry`; a feature adds its
tile, alert condition or metric there in a few lines.
"""
