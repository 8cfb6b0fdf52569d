"""Audit log (hash-chained, append-only) and provenance."""
