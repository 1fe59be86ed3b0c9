"""Shared ground of the ingest lab: configuration, errors, the database cluster, migrations."""
