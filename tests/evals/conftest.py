"""Shared sandbox pool for the evaluation tests (pre-started workers are reused across tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptyard.evals.sandbox import Sandbox

MBPP_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mbpp_sanitized.jsonl"
if not MBPP_SHARED.exists():
    MBPP_SHARED = Path("/work/shared/data/mbpp_sanitized.jsonl")


@pytest.fixture(scope="session")
def sandbox():
    with Sandbox(2, timeout=3.0) as box:
        yield box


@pytest.fixture(scope="session")
def mbpp_path() -> Path:
    if not MBPP_SHARED.exists():
        pytest.fail(f"the shared MBPP copy is missing at {MBPP_SHARED}")
    return MBPP_SHARED
