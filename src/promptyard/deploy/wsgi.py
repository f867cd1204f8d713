"""The WSGI entry gunicorn serves in the single-port unit: the app behind one trusted proxy (nginx)."""

from __future__ import annotations

from werkzeug.middleware.proxy_fix import ProxyFix

from promptyard import create_app
from promptyard.monitoring.logs import configure_logging

configure_logging()
app = create_app()
# nginx sets X-Forwarded-For/-Proto/-Host: rate limits per address then see the caller, not the proxy.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
