"""The nginx configuration of the single-port unit: /api/, /v1/, /metrics and /healthz to the API, / to Streamlit.

Runs unprivileged (every path under one prefix folder), in the foreground, logging errors to stderr. The API's
JSON error shape is kept for what nginx itself answers (a body over the limit, the API down).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# What Streamlit accepts for an upload by default (server.maxUploadSize, MB).
UI_MAX_BODY = "200m"


@dataclass(frozen=True)
class ProxyPlan:
    listen_host: str
    listen_port: int
    api_port: int
    ui_port: int | None          # None: no UI; / answers 404 in the API's error shape
    max_body_bytes: int          # the API's PROMPTYARD_MAX_BODY_BYTES
    read_timeout_s: int = 600    # a long generation may take minutes before its first byte


def _listen(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        return f"listen {port};"
    if host == "::":
        return f"listen [::]:{port} ipv6only=off;"
    return f"listen {'[' + host + ']' if ':' in host else host}:{port};"


def _json_error(status: int, code: str, message: str) -> str:
    body = '{"error": {"code": "%s", "message": "%s", "details": {}}}' % (code, message)
    return f"default_type application/json;\n            return {status} '{body}';"


API_PROXY = """
            proxy_pass http://promptyard_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id_in;
            # Streams (server-sent events) pass through as they are written, and bodies are not spooled to disk.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
            client_max_body_size {max_body};"""


def render(plan: ProxyPlan, prefix: Path) -> str:
    """The whole nginx.conf for `plan`, with its temp folders and pid file under `prefix`."""
    api = API_PROXY.replace("{read_timeout}", str(plan.read_timeout_s)).replace("{max_body}", str(plan.max_body_bytes))
    if plan.ui_port is not None:
        ui = f"""
        location / {{
            proxy_pass http://127.0.0.1:{plan.ui_port};
            proxy_http_version 1.1;
            # Streamlit talks over a WebSocket at /_stcore/stream.
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 1d;
            proxy_send_timeout 1d;
            client_max_body_size {UI_MAX_BODY};
        }}"""
    else:
        ui = f"""
        location / {{
            {_json_error(404, "not_found", "No such endpoint (this server runs the API only).")}
        }}"""
    # As root (CI containers), workers keep root so the folders below stay theirs; as anyone else nginx ignores it.
    user = "user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    return f"""# Written by promptyard up --single-port; regenerated on every start.
{user}worker_processes 2;
daemon off;
pid {prefix / 'nginx.pid'};
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;  # the API logs each request itself (JSON, with its request id)
    server_tokens off;
    client_body_temp_path {prefix / 'client_body'};
    proxy_temp_path {prefix / 'proxy'};
    fastcgi_temp_path {prefix / 'fastcgi'};
    uwsgi_temp_path {prefix / 'uwsgi'};
    scgi_temp_path {prefix / 'scgi'};
    client_body_buffer_size 1m;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    # A caller's X-Request-ID goes through; otherwise nginx's own id names the request end to end.
    map $http_x_request_id $request_id_in {{
        default $http_x_request_id;
        '' $request_id;
    }}
    upstream promptyard_api {{
        server 127.0.0.1:{plan.api_port};
        keepalive 16;
    }}
    server {{
        {_listen(plan.listen_host, plan.listen_port)}
        location /api/ {{{api}
        }}
        location /v1/ {{{api}
        }}
        location = /metrics {{{api}
        }}
        location = /healthz {{{api}
        }}{ui}
        error_page 413 = @too_large;
        error_page 502 503 504 = @api_down;
        location @too_large {{
            {_json_error(413, "payload_too_large", f"The request body is larger than the {plan.max_body_bytes} bytes allowed.")}
        }}
        location @api_down {{
            {_json_error(503, "backend_unavailable", "The server behind the proxy is not answering; try again shortly.")}
        }}
    }}
}}
"""


def write_config(plan: ProxyPlan, prefix: Path) -> Path:
    """Create the prefix folders and write nginx.conf there; returns its path."""
    for folder in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(render(plan, prefix))
    return path


def nginx_command(config: Path, prefix: Path, binary: str = "nginx") -> list[str]:
    return [binary, "-p", str(prefix), "-c", str(config), "-e", "stderr"]
