"""Dashboard page: empty state, cache metrics and charts per group."""

from __future__ import annotations

import json

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


def test_by_version_labels_each_group_by_prompt_and_version(open_page, api, echo_model):
    """Versions of two prompts with the same number are two bars, named by their prompt; no rate above 1."""
    api.create_prompt("alpha", "a {{ x }}")
    api.create_prompt("beta", "b {{ x }}")
    api.create_version("beta", "b2 {{ x }}")
    for prompt, version in (("alpha", 1), ("beta", 1), ("beta", 2)):
        api.execute("echo", prompt, version=version, variables={"x": "y"})
    api.execute("echo", input="raw words")
    at = open_page("dashboard")
    next(r for r in at.radio if r.label == "Group by").set_value("version").run()
    assert_no_crash(at)
    table = at.dataframe[0].value
    assert list(table["group"]) == ["alpha v1", "beta v1", "beta v2", "raw input"]
    assert (table["success_rate"] <= 1).all()
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert {spec["encoding"]["x"]["field"] for spec in specs} == {"group"}
    assert "version" not in {spec["encoding"]["y"]["field"] for spec in specs}  # the version number is no metric


def test_cache_tiles_count_from_the_records_so_a_restart_keeps_them(open_page, api, echo_model, live_api):
    for _ in range(3):
        api.execute("echo", input="same words")
    api.execute("echo", input="other words", cache=False)
    # A restart: the cache's per-process counters start again from zero; the records stay.
    cache = live_api[0].extensions["promptyard.execution.cache"]
    with cache._lock:
        cache._hits = cache._misses = 0
    at = open_page("dashboard")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Cache hits"], metrics["Cache misses"], metrics["Cache hit rate"]) == ("2", "2", "50.0 %")
