"""Observability: Prometheus metrics (job logs and the dashboard come next)."""
