"""Superset dashboards as code: the `dash` SQL views they read, the read-only role, the asset bundle."""
