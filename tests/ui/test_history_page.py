"""History page: empty state, the log with filters, the detail view and the export."""

from __future__ import annotations

import pytest
from tests.ui.ui_helpers import assert_no_crash, texts


@pytest.fixture
def runs(api, echo_model):
    api.create_prompt("greet", "Say hello to {{ who }}")
    first = api.execute("echo", "greet", variables={"who": "Ada"})
    second = api.execute("echo", input="one two", cache=False)
    return first, second


def test_empty_history(open_page):
    at = open_page("history")
    assert "No executions yet" in texts(at)


def test_log_detail_and_filters(open_page, runs):
    first, second = runs
    at = open_page("history")
    table = at.dataframe[0].value
    assert list(table["id"]) == [second["id"], first["id"]]
    assert list(table["prompt"]) == ["(raw input)", "greet"]
    assert "two one" in [c.value for c in at.code]
    next(s for s in at.selectbox if s.label == "Execution").set_value(first["id"]).run()
    codes = [c.value for c in at.code]
    assert "Say hello to Ada" in codes and "Ada to hello Say" in codes

    next(t for t in at.text_input if t.label == "Prompt").input("greet").run()
    assert list(at.dataframe[0].value["id"]) == [first["id"]]
    next(t for t in at.text_input if t.label == "Model").input("other-model").run()
    assert_no_crash(at)
    assert "No executions match these filters" in texts(at)


def test_detail_shows_the_rating(open_page, runs, api):
    _, second = runs
    api.feedback(second["id"], 4, "close enough")
    at = open_page("history")
    assert any("★★★★  close enough" in m.value for m in at.markdown)


def test_export_offers_a_download(open_page, runs):
    at = open_page("history")
    next(r for r in at.radio if r.label == "Format").set_value("csv").run()
    next(b for b in at.button if b.label == "Prepare export").click().run()
    assert_no_crash(at)
    assert any(d.proto.label == "Download executions.csv" for d in at.get("download_button"))
