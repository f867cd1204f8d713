"""History page: empty state, the log with filters, the detail view and the export."""

from __future__ import annotations

import re

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

    next(s for s in at.selectbox if s.label == "Prompt").set_value("greet").run()
    assert list(at.dataframe[0].value["id"]) == [first["id"]]
    version = next(s for s in at.selectbox if s.label == "Version")
    assert version.options == ["(any)", "1"] and not version.disabled  # no "0 means any"
    version.set_value(1).run()
    assert list(at.dataframe[0].value["id"]) == [first["id"]]
    model = next(s for s in at.selectbox if s.label == "Model")
    assert "echo" in model.options  # picked, not typed exactly
    next(s for s in at.selectbox if s.label == "Prompt").set_value("(any)").run()
    assert next(s for s in at.selectbox if s.label == "Version").disabled
    next(s for s in at.selectbox if s.label == "Status").set_value("failed").run()
    assert_no_crash(at)
    assert "No executions match these filters" in texts(at)


def test_times_and_costs_read_plainly(open_page, api, live_api):
    from promptyard.models.service import install_plugin
    from promptyard.plugins.function import FunctionPlugin

    with live_api[0].app_context():
        install_plugin("priced", FunctionPlugin(lambda p, params: "a b c"), pricing={"input_per_1k": 0.01})
    record = api.execute("priced", input="one two three four five six seven")
    at = open_page("history")
    row = at.dataframe[0].value.iloc[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row["when"])
    assert "e-" not in row["cost"] and float(row["cost"]) == pytest.approx(record["cost"], rel=1e-3)


def test_rate_an_execution_from_history(open_page, runs, api):
    first, second = runs
    at = open_page("history")
    next(r for r in at.radio if r.label == "Rate this output").set_value(2)
    next(t for t in at.text_input if t.label == "Comment (optional)").input("too short")
    next(b for b in at.button if b.label == "Submit rating").click().run()
    assert_no_crash(at)
    assert f"execution {second['id']} rated 2/5" in texts(at)
    assert [(f["rating"], f["comment"]) for f in api.get_execution(second["id"])["feedback"]] == [(2, "too short")]


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
