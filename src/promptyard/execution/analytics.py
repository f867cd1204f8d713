"""Execution analytics grouped by model, prompt, version or day; percentiles in Python so every database agrees."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import Feedback
from promptyard.errors import Unprocessable
from promptyard.execution.history import HistoryFilters

GROUPS = ("model", "prompt", "version", "day")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def analytics(group_by: str, filters: HistoryFilters) -> list[dict[str, Any]]:
    """Per group: count, success rate, p50/p95 latency, tokens, cost, cache hit rate, mean rating."""
    if group_by not in GROUPS:
        raise Unprocessable(f"Unknown group_by '{group_by}'; use one of {', '.join(GROUPS)}.",
                            code="invalid_group_by", details={"field": "group_by"})
    matching = filters.statement().subquery()
    rows = db.session.execute(select(
        matching.c.id, matching.c.model_name, matching.c.prompt_name, matching.c.version_number,
        matching.c.created_at, matching.c.status, matching.c.latency_ms, matching.c.tokens_in,
        matching.c.tokens_out, matching.c.cost, matching.c.cache_hit,
    )).all()
    ratings: dict[int, list[int]] = defaultdict(list)
    for execution_id, rating in db.session.execute(
        select(Feedback.execution_id, Feedback.rating).where(Feedback.execution_id.in_(select(matching.c.id)))
    ):
        ratings[execution_id].append(rating)

    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[_group_key(group_by, row)].append(row)
    items = [_summary(group_by, key, members, ratings) for key, members in groups.items()]
    return sorted(items, key=lambda item: tuple((v is None, v) for v in _sort_key(group_by, item)))


def _group_key(group_by: str, row: Any) -> tuple:
    if group_by == "model":
        return (row.model_name,)
    if group_by == "prompt":
        return (row.prompt_name,)
    if group_by == "version":
        return (row.prompt_name, row.version_number)
    created = row.created_at
    return (created.date().isoformat() if created is not None else None,)


def _sort_key(group_by: str, item: dict[str, Any]) -> tuple:
    return (item["prompt"], item["version"]) if group_by == "version" else (item[group_by],)


def _summary(group_by: str, key: tuple, members: list, ratings: dict[int, list[int]]) -> dict[str, Any]:
    count = len(members)
    latencies = [m.latency_ms for m in members if m.latency_ms is not None]
    group_ratings = [r for m in members for r in ratings.get(m.id, [])]
    labels = {"prompt": key[0], "version": key[1]} if group_by == "version" else {group_by: key[0]}
    return {
        **labels,
        "count": count,
        "success_rate": sum(m.status == "succeeded" for m in members) / count,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "tokens_in": sum(m.tokens_in or 0 for m in members),
        "tokens_out": sum(m.tokens_out or 0 for m in members),
        "cost": round(sum(m.cost or 0.0 for m in members), 10),
        "cache_hit_rate": sum(bool(m.cache_hit) for m in members) / count,
        "mean_rating": sum(group_ratings) / len(group_ratings) if group_ratings else None,
        "ratings": len(group_ratings),
    }
