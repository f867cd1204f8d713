"""Schemathesis over the whole OpenAPI document: valid and invalid requests for every operation, on SQLite and on
PostgreSQL, with auth off and with a fixed admin key. No answer may be a server error, and every answer must be
one the document describes (status code and body schema).

Examples per operation are bounded (FUZZ_EXAMPLES, default 12 valid and 12 invalid) to keep the four runs to a
few minutes on a 2-core machine; raise it to fuzz harder: `FUZZ_EXAMPLES=500 pytest tests/api/test_fuzz_openapi.py`.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from promptyard.db import db
from promptyard.db.models import ApiKey

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Creating a key turns auth on for good (by design); with auth off that would end the run's coverage, so that one
# operation is fuzzed only with the admin key, where a created key changes nothing.
KEY_CREATION = ("POST", "/api/v1/keys")


@pytest.fixture(params=["auth-off", "admin-key"])
def app_config(request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a fuzzed model source must never reach the network
    config = {"PROMPTYARD_RATE_LIMIT": "off"}
    if request.param == "admin-key":
        config["PROMPTYARD_ADMIN_KEY"] = ADMIN_KEY
    return config


def test_the_whole_document_without_server_errors_or_schema_violations(app, app_config):
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if app_config.get("PROMPTYARD_ADMIN_KEY") else {}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=dict(headers))
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not headers and (operation.method.upper(), operation.path) == KEY_CREATION:
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_fuzz(operation, mode, headers))
    assert operations > 40
    if not headers:  # auth is still off: nothing the fuzzer did created a key
        assert db.session.query(ApiKey).count() == 0
    assert not failures, "\n\n".join(failures[:20])


def _fuzz(operation, mode, headers) -> list[str]:
    found: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as exc:  # keep going, to report every failing operation once
            if not found:
                found.append(f"{case.method} {case.formatted_path} ({mode.value}): {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
        assert mode == GenerationMode.NEGATIVE
    db.session.remove()
    return found
