"""Analytics per model, prompt, version and day, checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from promptyard.db import db
from promptyard.db.models import Execution, Feedback
from promptyard.errors import Unprocessable
from promptyard.execution.analytics import analytics, percentile
from promptyard.execution.history import HistoryFilters

DAY1 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)


def test_percentile_interpolates_like_numpy():
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 50) == 30.0
    assert percentile(values, 95) == pytest.approx(48.0)  # position 3.8 between 40 and 50
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


@pytest.fixture
def history(app):
    # model a: 4 runs on day 1; model b: 2 runs on day 2
    specs = [
        ("a", "p", 1, DAY1, "succeeded", 100.0, 10, 20, 0.5, False, [5, 3]),
        ("a", "p", 1, DAY1, "succeeded", 200.0, 10, 30, 0.25, True, [4]),
        ("a", "p", 2, DAY1, "failed", 300.0, 5, 0, 0.0, False, []),
        ("a", None, None, DAY1, "succeeded", 400.0, 1, 1, 0.25, False, []),
        ("b", "p", 2, DAY2, "succeeded", 50.0, 2, 2, 1.0, False, [2]),
        ("b", "p", 2, DAY2, "cancelled", None, 0, 0, 0.0, False, []),
    ]
    for model, prompt, version, day, status, latency, t_in, t_out, cost, hit, ratings in specs:
        row = Execution(model_name=model, prompt_name=prompt, version_number=version, created_at=day,
                        status=status, latency_ms=latency, tokens_in=t_in, tokens_out=t_out, cost=cost,
                        cache_hit=hit)
        row.feedback = [Feedback(rating=r) for r in ratings]
        db.session.add(row)
    db.session.commit()


def by(items, *keys):
    return {tuple(item[k] for k in keys): item for item in items}


def test_grouped_by_model(history):
    items = by(analytics("model", HistoryFilters()), "model")
    a = items[("a",)]
    assert a["count"] == 4
    assert a["success_rate"] == 0.75
    assert a["latency_p50_ms"] == 250.0  # median of 100, 200, 300, 400
    assert a["latency_p95_ms"] == pytest.approx(385.0)  # 300 + 0.85 * 100
    assert (a["tokens_in"], a["tokens_out"]) == (26, 51)
    assert a["cost"] == pytest.approx(1.0)
    assert a["cache_hit_rate"] == 0.25
    assert a["mean_rating"] == pytest.approx(4.0)  # (5 + 3 + 4) / 3
    b = items[("b",)]
    assert (b["count"], b["success_rate"], b["latency_p50_ms"], b["mean_rating"]) == (2, 0.5, 50.0, 2.0)


def test_grouped_by_prompt_version_and_day(history):
    prompts = by(analytics("prompt", HistoryFilters()), "prompt")
    assert prompts[("p",)]["count"] == 5 and prompts[(None,)]["count"] == 1
    versions = by(analytics("version", HistoryFilters()), "prompt", "version")
    assert versions[("p", 2)]["count"] == 3
    assert versions[("p", 2)]["success_rate"] == pytest.approx(1 / 3)
    assert versions[("p", 1)]["mean_rating"] == pytest.approx(4.0)
    days = analytics("day", HistoryFilters())
    assert [(d["day"], d["count"]) for d in days] == [("2026-03-01", 4), ("2026-03-02", 2)]


def test_filters_apply(history):
    items = analytics("model", HistoryFilters(status="succeeded"))
    assert [(i["model"], i["count"], i["success_rate"]) for i in items] == [("a", 3, 1.0), ("b", 1, 1.0)]


def test_unknown_grouping_is_422(app):
    with pytest.raises(Unprocessable):
        analytics("colour", HistoryFilters())
