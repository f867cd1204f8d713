"""deploy/compose.yaml: valid against the Compose specification (vendored in check-jsonschema, offline), and the
topology the scale-out test starts: API processes and Celery workers on PostgreSQL and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.test_scale_out import WORKER_ARGS
from tests.deploy.unitproc import REPO

COMPOSE = REPO / "deploy" / "compose.yaml"


def test_compose_file_is_valid():
    result = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
                             "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mirrors_the_tested_topology():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"web", "api", "worker", "postgres", "redis", "vllm"} <= set(services)
    assert services["vllm"]["profiles"] == ["vllm"]  # optional
    # The worker runs the command the scale-out test runs.
    assert services["worker"]["entrypoint"] == ["celery", *WORKER_ARGS]
    for name in ("web", "api", "worker"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert env["PROMPTYARD_BROKER_URL"].startswith("redis://redis:6379/")
    # The web service is the Space image as built from the repository's Dockerfile, on its port.
    assert services["web"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (COMPOSE.parent / services["web"]["build"]["context"] / "Dockerfile").resolve() == REPO / "Dockerfile"
    assert services["web"]["ports"] == ["7860:7860"]
    # Migrations run once: the other processes wait for web to be healthy.
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["api"]["entrypoint"][:4] == ["promptyard", "up", "--single-port", "7860"]
    assert "--no-ui" in services["api"]["entrypoint"]
