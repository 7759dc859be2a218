"""Genixer data engine: the pure library (no Dagster here)."""
