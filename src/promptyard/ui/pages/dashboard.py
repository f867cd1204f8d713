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
# Hits and misses from the execution records, which survive a restart (the cache's own counters are per process).
everything = items(load(api.analytics, group_by="model"))
executions = sum(int(g.get("count") or 0) for g in everything)
hits = round(sum((g.get("cache_hit_rate") or 0) * int(g.get("count") or 0) for g in everything))
cols = st.columns(4)
cols[0].metric("Cache entries", fmt(stats.get("entries")))
cols[1].metric("Cache hits", fmt(hits), help="Executions answered from the response cache.")
cols[2].metric("Cache misses", fmt(executions - hits), help="Executions the model generated.")
cols[3].metric("Cache hit rate", fmt(hits / executions * 100 if executions else 0.0, " %", 1),
               help="Share of all recorded executions answered from the cache.")

group_by = st.radio("Group by", ["day", "model", "prompt", "version"], horizontal=True,
                    format_func=lambda g: {"day": "over time (day)"}.get(g, f"by {g}"))
groups = items(load(api.analytics, group_by=group_by))
if not groups:
    st.info("No executions yet: the charts fill in as prompts run (try the Workbench).")
    st.stop()

frame = pd.json_normalize(groups)
LABEL_COLUMNS = {"prompt", "version", "model", "day", *GROUP_KEYS}


def version_label(row: pd.Series) -> str:
    """A version group named by its prompt: versions of different prompts never share a bar."""
    prompt, version = row.get("prompt"), row.get("version")
    if prompt is None or (isinstance(prompt, float) and pd.isna(prompt)):
        return "raw input"
    return f"{prompt} v{int(version)}" if version is not None and not pd.isna(version) else str(prompt)


if group_by == "version":
    group_column = "group"
    frame.insert(0, group_column, frame.apply(version_label, axis=1))
else:
    group_column = next((c for c in (group_by, *GROUP_KEYS) if c in frame.columns), frame.columns[0])
    frame[group_column] = frame[group_column].astype(str)
numeric = [c for c in frame.columns if c not in LABEL_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])]


def chart(column: str) -> alt.Chart:
    """One metric per group: a line over days, bars otherwise."""
    base = alt.Chart(frame).encode(
        x=alt.X(f"{group_column}:{'T' if group_by == 'day' else 'N'}", title=group_by,
                sort=None),  # the API's order (by prompt, then version number), not alphabetical
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
