"""History: the execution log with filters, a detail view, and export to CSV or JSONL."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, fmt, items, load
from promptyard.ui.forms import cost_text

st.title("Execution history")
api = client()

PAGE_SIZE = 50
with st.expander("Filters", expanded=True):
    row1 = st.columns(4)
    prompt = row1[0].text_input("Prompt", value=st.session_state.get("history_prompt", ""))
    version = row1[1].number_input("Version", min_value=0, value=0, help="0: any version")
    model = row1[2].text_input("Model")
    status = row1[3].selectbox("Status", ["(any)", "succeeded", "failed", "cancelled", "running", "queued"])
    row2 = st.columns(4)
    since = row2[0].date_input("Since", value=None)
    until = row2[1].date_input("Until", value=None)
    cache_choice = row2[2].selectbox("Cache", ["(any)", "hits only", "misses only"])
    page = int(row2[3].number_input("Page", min_value=1, value=1))

filters = {
    "prompt": prompt.strip() or None,
    "version": int(version) or None,
    "model": model.strip() or None,
    "status": None if status == "(any)" else status,
    "since": since.isoformat() if since else None,
    "until": (until + dt.timedelta(days=1)).isoformat() if until else None,
    "cache_hit": {"(any)": None, "hits only": True, "misses only": False}[cache_choice],
}
result = load(api.list_executions, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
rows = items(result)
total = (result or {}).get("total", len(rows))

if not rows:
    st.info("No executions match these filters." if any(filters.values()) or page > 1 else
            "No executions yet: run a prompt in the Workbench and it shows up here.")
    st.stop()

st.caption(f"{total} execution(s), newest first; times in UTC. Showing {len(rows)} from row {(page - 1) * PAGE_SIZE + 1}.")
table = pd.DataFrame(
    [
        {
            "id": r["id"],
            "when": (r.get("created_at") or "")[:19].replace("T", " "),
            "prompt": r.get("prompt") or "(raw input)",
            "version": r.get("version"),
            "model": r.get("model"),
            "status": r.get("status"),
            "latency ms": round(r["latency_ms"]) if r.get("latency_ms") is not None else None,
            "tokens in": r.get("tokens_in"),
            "tokens out": r.get("tokens_out"),
            "cost": r.get("cost"),
            "cache hit": r.get("cache_hit"),
        }
        for r in rows
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Details")
chosen = st.selectbox("Execution", [r["id"] for r in rows], format_func=lambda i: f"#{i}")
record = load(api.get_execution, chosen)
left, right = st.columns(2)
with left:
    st.markdown("**Rendered input**")
    rendered = record.get("rendered_input") or record.get("input")
    st.code(rendered if isinstance(rendered, str) else json.dumps(rendered, indent=2), language=None, wrap_lines=True)
with right:
    st.markdown("**Output**")
    st.code(record.get("output") or "", language=None, wrap_lines=True)
    if record.get("error"):
        st.error(f"Error: {record['error']}")
st.caption(f"#{record['id']} · {record.get('status')} · {record.get('model')} · "
           f"{(record.get('created_at') or '')[:19].replace('T', ' ')} UTC"
           + (" · from the cache" if record.get("cache_hit") else ""))
cols = st.columns(4)
cols[0].metric("Latency", fmt(record.get("latency_ms"), " ms", 0))
cols[1].metric("Queue wait", fmt(record.get("queue_wait_ms"), " ms", 0))
cols[2].metric("Tokens in / out", f"{fmt(record.get('tokens_in'))} / {fmt(record.get('tokens_out'))}")
cols[3].metric("Cost", cost_text(record.get("cost")))
st.markdown("**Params**")
st.json(record.get("params") or {}, expanded=False)
st.markdown("**Feedback**")
if record.get("feedback"):
    entries = record["feedback"]
    for entry in entries:
        st.write(f"{'★' * int(entry.get('rating') or 0)}  {entry.get('comment') or ''}")
else:
    st.caption("No rating yet: rate it in the Workbench after a run.")

st.subheader("Export")
fmt_col, button_col = st.columns([1, 3], vertical_alignment="bottom")
export_format = fmt_col.radio("Format", ["csv", "jsonl"], horizontal=True)
if button_col.button("Prepare export"):
    data = act(api.export_executions, export_format, **filters)
    if data is not None:
        st.download_button(f"Download executions.{export_format}", data, f"executions.{export_format}",
                           mime="text/csv" if export_format == "csv" else "application/jsonl")
