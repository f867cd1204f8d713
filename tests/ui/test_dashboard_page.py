"""Dashboard page: empty state, cache metrics and charts per group."""

from __future__ import annotations

from tests.ui.ui_helpers import assert_no_crash, texts


def test_empty_dashboard(open_page):
    at = open_page("dashboard")
    assert "No executions yet" in texts(at)
    assert {m.label for m in at.metric} >= {"Cache entries", "Cache hit rate"}


def test_charts_by_model_and_over_time(open_page, api, echo_model):
    api.execute("echo", input="a b")
    api.execute("echo", input="a b")
    at = open_page("dashboard")
    next(r for r in at.radio if r.label == "Group by").set_value("model").run()
    assert_no_crash(at)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 4
    assert "count" in "".join(c.proto.spec for c in charts)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cache hits"] == "1"
    next(r for r in at.radio if r.label == "Group by").set_value("day").run()
    assert_no_crash(at)
    assert at.get("vega_lite_chart")
