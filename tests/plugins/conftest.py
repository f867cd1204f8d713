"""Fixtures for the plugin tests: a scripted OpenAI-compatible server."""

from __future__ import annotations

import pytest

from tests.fixtures.openai_server import OpenAIServer


@pytest.fixture
def openai_server():
    with OpenAIServer() as server:
        yield server
