"""UI fixtures: the Streamlit app under AppTest, talking to a real API served in the test."""

from __future__ import annotations

import socket

import pytest
from streamlit.testing.v1 import AppTest

from promptyard.client import PromptyardClient
from promptyard.plugins.function import FunctionPlugin
from tests.ui.ui_helpers import APP, assert_no_crash


def reverse_words(prompt, params) -> str:
    return " ".join(reversed(str(prompt).split()))


@pytest.fixture
def api(live_api):
    """A client of the live API, for seeding data and checking what the UI did."""
    with PromptyardClient(live_api[1]) as client:
        yield client


@pytest.fixture
def echo_model(live_api):
    """A FunctionPlugin model named `echo` (answers with the prompt's words reversed)."""
    from promptyard.models.service import install_plugin

    with live_api[0].app_context():
        install_plugin("echo", FunctionPlugin(reverse_words))
    return "echo"


@pytest.fixture
def open_page(live_api, monkeypatch):
    """Open one page of the real app (through st.navigation) against the live API."""
    monkeypatch.setenv("PROMPTYARD_API_URL", live_api[1])

    def open_(page: str, **state) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if page != "library":
            at.switch_page(f"pages/{page}.py")
            at.run()
        assert_no_crash(at)
        return at

    return open_


@pytest.fixture
def unreachable_url(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("PROMPTYARD_API_URL", url)
    return url
