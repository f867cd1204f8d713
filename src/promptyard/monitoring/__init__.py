"""Monitoring: Prometheus metrics (metrics.py), structured logs (logs.py) and the HTTP hooks that feed both (http.py)."""
