"""History: the execution log with filters, a detail view, and export to CSV or JSONL."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, fmt, items, load, model_names, prompt_names, show_flash
from promptyard.ui.forms import cost_text, rating_form, when

st.title("Execution history")
api = client()

PAGE_SIZE = 50
ANY = "(any)"
show_flash()
with st.expander("Filters", expanded=True):
    row1 = st.columns(4)
    prompts = [ANY] + prompt_names(api)
    wanted_prompt = st.session_state.pop("history_prompt", None)  # set by a link from another page
    if wanted_prompt in prompts:
        st.session_state["history::prompt"] = wanted_prompt
    prompt = row1[0].selectbox("Prompt", prompts, key="history::prompt")
    versions = [ANY] + ([v["version"] for v in items(load(api.list_versions, prompt, limit=500))]
                        if prompt != ANY else [])
    version = row1[1].selectbox("Version", versions, disabled=prompt == ANY,
                                help="Pick a prompt first." if prompt == ANY else None)
    model = row1[2].selectbox("Model", [ANY] + model_names(api))
    status = row1[3].selectbox("Status", [ANY, "succeeded", "failed", "cancelled", "running", "queued"])
    row2 = st.columns(4)
    since = row2[0].date_input("Since", value=None)
    until = row2[1].date_input("Until", value=None)
    cache_choice = row2[2].selectbox("Cache", [ANY, "hits only", "misses only"])
    page = int(row2[3].number_input("Page", min_value=1, value=1))

filters = {
    "prompt": None if prompt == ANY else prompt,
    "version": None if version == ANY else int(version),
    "model": None if model == ANY else model,
    "status": None if status == ANY else status,
    "since": since.isoformat() if since else None,
    "until": (until + dt.timedelta(days=1)).isoformat() if until else None,
    "cache_hit": {ANY: None, "hits only": True, "misses only": False}[cache_choice],
}
result = load(api.list_executions, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
rows = items(result)
total = (result or {}).get("total", len(rows))

if not rows:
    st.info("No executions match these filters." if any(filters.values()) or page > 1 else
            "No executions yet: run a prompt in the Workbench and it shows up here.")
    st.stop()

st.caption(f"{total} execution(s), newest first. Showing {len(rows)} from row {(page - 1) * PAGE_SIZE + 1}.")
table = pd.DataFrame(
    [
        {
            "id": r["id"],
            "when": when(r.get("created_at")),
            "prompt": r.get("prompt") or "(raw input)",
            "version": r.get("version"),
            "model": r.get("model"),
            "status": r.get("status"),
            "latency ms": round(r["latency_ms"]) if r.get("latency_ms") is not None else None,
            "tokens in": r.get("tokens_in"),
            "tokens out": r.get("tokens_out"),
            "cost": cost_text(r.get("cost")),
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
           f"{when(record.get('created_at'))}"
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
    st.caption("No rating yet.")
rating_form(api, record, lambda message: (flash(message), st.rerun()))

st.subheader("Export")
fmt_col, button_col = st.columns([1, 3], vertical_alignment="bottom")
export_format = fmt_col.radio("Format", ["csv", "jsonl"], horizontal=True)
if button_col.button("Prepare export"):
    data = act(api.export_executions, export_format, **filters)
    if data is not None:
        st.download_button(f"Download executions.{export_format}", data, f"executions.{export_format}",
                           mime="text/csv" if export_format == "csv" else "application/jsonl")
