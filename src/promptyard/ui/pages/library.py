"""Library: browse and search prompts, filter by tag, see labels and latest versions; create a prompt."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, items, load, open_page, show_flash
from promptyard.ui.forms import when

st.title("Prompt library")
show_flash()
api = client()

search, tag_box = st.columns([3, 1])
query = search.text_input("Search", placeholder="name, description or template text")
everything = items(load(api.list_prompts, limit=500))
tags = sorted({tag for prompt in everything for tag in prompt.get("tags") or []})
tag = tag_box.selectbox("Tag", ["(any)", *tags])
prompts = items(load(api.list_prompts, q=query or None, tag=None if tag == "(any)" else tag, limit=500))


def _labels(prompt: dict) -> str:
    return ", ".join(f"{label} → v{version}" for label, version in (prompt.get("labels") or {}).items())


if not everything:
    st.info("The library is empty. Create your first prompt below.")
elif not prompts:
    st.info("No prompt matches this search.")
else:
    table = pd.DataFrame(
        [
            {
                "name": p["name"],
                "latest version": (p.get("latest_version") or {}).get("version"),
                "labels": _labels(p),
                "updated": when(p.get("updated_at") or (p.get("latest_version") or {}).get("created_at")),
                "tags": ", ".join(p.get("tags") or []),
                "description": p.get("description") or "",
            }
            for p in prompts
        ]
    )
    # The short columns first and the description last and bounded: a long description pushed the version, labels
    # and date out of sight on a laptop screen.
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "name": st.column_config.TextColumn(width="medium"),
        "latest version": st.column_config.NumberColumn(width="small"),
        "updated": st.column_config.TextColumn(width="medium"),
        "description": st.column_config.TextColumn(width="large"),
    })
    pick, open_editor, open_bench = st.columns([3, 1, 1], vertical_alignment="bottom")
    chosen = pick.selectbox("Prompt", [p["name"] for p in prompts])
    if open_editor.button("Open in editor"):
        st.session_state["prompt"] = chosen
        open_page("editor")
    if open_bench.button("Run in workbench"):
        st.session_state["prompt"] = chosen
        open_page("workbench")

st.subheader("New prompt")
with st.form("create_prompt", clear_on_submit=False):
    name = st.text_input("Name", placeholder="fix-bug", help="Lowercase letters, digits, '.', '_' and '-'.")
    description = st.text_input("Description")
    tag_text = st.text_input("Tags", placeholder="python, refactoring", help="Comma-separated.")
    template = st.text_area(
        "Template", height=160, placeholder="Write a Python function that {{ task }}.",
        help="Jinja2: every {{ name }} becomes a variable filled in when the prompt runs.",
    )
    message = st.text_input("Message", value="First version")
    if st.form_submit_button("Create prompt", type="primary"):
        if not name.strip() or not template.strip():
            st.error("A prompt needs a name and a template.")
        else:
            created = act(
                api.create_prompt, name.strip(), template, description=description or None,
                tags=[t.strip() for t in tag_text.split(",") if t.strip()] or None, message=message or None,
            )
            if created:
                st.session_state["prompt"] = created["name"]
                flash(f"Created prompt '{created['name']}' (version 1).")
                st.rerun()

with st.expander("Import / export the library"):
    upload = st.file_uploader("Import a library export (YAML or JSON)", type=["yaml", "yml", "json"])
    if upload is not None and st.button("Import"):
        text = upload.getvalue().decode("utf-8", errors="replace")
        counts = act(api.import_prompts, text)
        if counts is not None:
            flash(f"Imported: {json.dumps(counts)}")
            st.rerun()
    if st.button("Prepare export"):
        exported = act(api.export_prompts)
        if exported is not None:
            st.download_button("Download library.json", json.dumps(exported, indent=2), "library.json",
                               mime="application/json")
