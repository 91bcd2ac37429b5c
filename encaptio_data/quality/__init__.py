"""Data quality: GX suites as code, integrity across the stores, and their Dagster asset checks.

``catalog`` lists every check once; ``checks`` turns the list into Dagster asset checks and
``runner`` runs it outside Dagster for ``encaptio quality run``. The domain functions the
checks call live in ``encaptio_data.integrity`` (no Dagster, no GX).
"""
