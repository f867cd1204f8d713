"""The app shell: every page reads well when the API is down, and an API key is entered once per session."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from tests.ui.ui_helpers import APP, assert_no_crash, texts

PAGES = ["library", "editor", "workbench", "history", "experiments", "evaluations", "dashboard", "models"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_an_unreachable_api(page, unreachable_url):
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    if page != "library":
        at.switch_page(f"pages/{page}.py").run()
    assert_no_crash(at)
    assert any(f"API at {unreachable_url} is not reachable" in box.value for box in at.error)


def test_a_key_entered_in_the_sidebar_is_kept_for_the_session(open_page, api):
    key = api.create_key("admin", name="ui")["key"]
    at = open_page("library")
    assert "needs an API key" in texts(at)
    at.sidebar.text_input[0].input(key).run()
    assert at.session_state["api_key"] == key
    assert "needs an API key" not in texts(at)
    at.switch_page("pages/models.py").run()
    assert_no_crash(at)
    assert at.session_state["api_key"] == key
    assert "needs an API key" not in texts(at)


def test_a_wrong_key_reads_as_a_message(open_page, api):
    api.create_key("admin")
    at = open_page("models", api_key="not-a-key")
    assert_no_crash(at)
    assert "invalid or has been revoked" in texts(at)
