"""Dashboard: executions, latency percentiles, cost and cache hit rate over time and by model or prompt."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from promptyard.ui.common import client, fmt, items, load

st.title("Dashboard")
api = client()

GROUP_KEYS = ("group", "key", "value", "name")

stats = load(api.cache_stats)
cols = st.columns(4)
cols[0].metric("Cache entries", fmt(stats.get("entries")))
cols[1].metric("Cache hits", fmt(stats.get("hits")))
cols[2].metric("Cache misses", fmt(stats.get("misses")))
cols[3].metric("Cache hit rate", fmt((stats.get("hit_rate") or 0) * 100, " %", 1))

group_by = st.radio("Group by", ["day", "model", "prompt", "version"], horizontal=True,
                    format_func=lambda g: {"day": "over time (day)"}.get(g, f"by {g}"))
groups = items(load(api.analytics, group_by=group_by))
if not groups:
    st.info("No executions yet: the charts fill in as prompts run (try the Workbench).")
    st.stop()

frame = pd.json_normalize(groups)
group_column = next((c for c in (group_by, *GROUP_KEYS) if c in frame.columns), frame.columns[0])
frame[group_column] = frame[group_column].astype(str)
numeric = [c for c in frame.columns if c != group_column and pd.api.types.is_numeric_dtype(frame[c])]


def chart(column: str) -> alt.Chart:
    """One metric per group: a line over days, bars otherwise."""
    base = alt.Chart(frame).encode(
        x=alt.X(f"{group_column}:{'T' if group_by == 'day' else 'N'}", title=group_by),
        y=alt.Y(f"{column}:Q", title=column.replace("_", " ")),
        tooltip=[group_column, column],
    )
    mark = base.mark_line(point=True) if group_by == "day" else base.mark_bar()
    return mark.properties(title=column.replace("_", " "), height=220)


wanted = ["count", "executions", "success_rate", "latency_p50_ms", "p50_latency_ms", "latency_p95_ms",
          "p95_latency_ms", "cost", "total_cost", "cache_hit_rate", "tokens_in", "tokens_out", "mean_rating"]
ordered = [c for c in wanted if c in numeric] + [c for c in numeric if c not in wanted]
for left, right in zip(ordered[::2], ordered[1::2] + [None]):
    columns = st.columns(2)
    columns[0].altair_chart(chart(left), width="stretch")
    if right:
        columns[1].altair_chart(chart(right), width="stretch")

with st.expander("Table"):
    st.dataframe(frame, hide_index=True, width="stretch")
