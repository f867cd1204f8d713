"""History: filters, newest first, paging, CSV and JSONL export."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from promptyard.db import db
from promptyard.db.models import Execution
from promptyard.errors import NotFound, Unprocessable
from promptyard.execution.history import HistoryFilters, export_executions, get_execution, list_executions

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def rows(app):
    specs = [
        dict(model_name="a", prompt_name="p", version_number=1, status="succeeded", cache_hit=False),
        dict(model_name="a", prompt_name="p", version_number=2, status="failed", cache_hit=False),
        dict(model_name="b", prompt_name="q", version_number=1, status="succeeded", cache_hit=True),
        dict(model_name="b", prompt_name=None, version_number=None, status="cancelled", cache_hit=False),
    ]
    created = []
    for hours, spec in enumerate(specs):
        row = Execution(created_at=T0 + timedelta(hours=hours), rendered_input=f"in {hours}",
                        output=f"out, \"{hours}\"\nline", params={"max_new_tokens": hours + 1}, **spec)
        db.session.add(row)
        created.append(row)
    db.session.commit()
    return [row.id for row in created]


def ids(filters=HistoryFilters(), **page):
    items, total = list_executions(filters, **page)
    return [row.id for row in items], total


def test_newest_first_with_total(rows):
    assert ids() == (rows[::-1], 4)


@pytest.mark.parametrize(
    "filters, expected",
    [
        (HistoryFilters(model="a"), [1, 0]),
        (HistoryFilters(prompt="p"), [1, 0]),
        (HistoryFilters(prompt="p", version=2), [1]),
        (HistoryFilters(version=1), [2, 0]),
        (HistoryFilters(status="succeeded"), [2, 0]),
        (HistoryFilters(cache_hit=True), [2]),
        (HistoryFilters(cache_hit=False), [3, 1, 0]),
        (HistoryFilters(since=T0 + timedelta(hours=1)), [3, 2, 1]),
        (HistoryFilters(until=T0 + timedelta(hours=1)), [1, 0]),
        (HistoryFilters(since=datetime(2026, 3, 1, 13), until=datetime(2026, 3, 1, 14)), [2, 1]),
        (HistoryFilters(model="nobody"), []),
    ],
)
def test_filters(rows, filters, expected):
    assert ids(filters) == ([rows[i] for i in expected], len(expected))


def test_paging(rows):
    assert ids(limit=2, offset=1) == (rows[2:0:-1], 4)
    with pytest.raises(Unprocessable):
        list_executions(HistoryFilters(), limit=501)


def test_bad_filters_are_422(rows):
    with pytest.raises(Unprocessable):
        list_executions(HistoryFilters(status="exploded"))
    with pytest.raises(Unprocessable):
        list_executions(HistoryFilters(since=T0 + timedelta(days=1), until=T0))


def test_get_execution(rows):
    assert get_execution(rows[0]).model_name == "a"
    with pytest.raises(NotFound):
        get_execution(10_000)


def test_jsonl_export_is_one_record_per_line(rows):
    lines = "".join(export_executions(HistoryFilters(model="b"), "jsonl")).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == rows[2:]
    assert records[0]["output"] == "out, \"2\"\nline" and records[0]["params"] == {"max_new_tokens": 3}


def test_csv_export_round_trips_awkward_text(rows):
    text = "".join(export_executions(HistoryFilters(), "csv"))
    records = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in records] == rows
    assert records[1]["output"] == "out, \"1\"\nline"
    assert json.loads(records[1]["params"]) == {"max_new_tokens": 2}
    assert records[3]["prompt"] == ""


def test_export_of_nothing_is_a_header_or_empty(app):
    assert "".join(export_executions(HistoryFilters(), "csv")).startswith("id,created_at")
    assert "".join(export_executions(HistoryFilters(), "jsonl")) == ""
    with pytest.raises(Unprocessable):
        export_executions(HistoryFilters(), "xml")


def test_exports_carry_the_feedback(rows):
    from promptyard.execution.feedback import add_feedback

    add_feedback(rows[0], 2, "too long")
    add_feedback(rows[0], 5, "fixed, \"great\"")
    add_feedback(rows[2], 3, "")
    lines = "".join(export_executions(HistoryFilters(), "jsonl")).splitlines()
    by_id = {r["id"]: r for r in map(json.loads, lines)}
    assert [(f["rating"], f["comment"]) for f in by_id[rows[0]]["feedback"]] == [(2, "too long"),
                                                                                 (5, "fixed, \"great\"")]
    assert by_id[rows[1]]["feedback"] == []
    records = {int(r["id"]): r for r in csv.DictReader(io.StringIO("".join(export_executions(HistoryFilters(),
                                                                                            "csv"))))}
    assert (records[rows[0]]["rating"], records[rows[0]]["comment"]) == ("5", "fixed, \"great\"")
    assert len(json.loads(records[rows[0]]["feedback"])) == 2
    assert records[rows[2]]["rating"] == "3" and records[rows[1]]["rating"] == "" and records[rows[1]]["feedback"] == ""
