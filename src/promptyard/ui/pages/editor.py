"""Editor: edit a template, save versions, diff any two versions, move labels and roll back."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, items, load, parse_json, prompt_names, show_flash, try_load
from promptyard.ui.common import section
from promptyard.ui.diffs import side_by_side

st.title("Prompt editor")
show_flash()
api = client()

names = prompt_names(api)
if not names:
    st.info("The library is empty: create a prompt on the Library page first.")
    st.stop()
current = st.session_state.get("prompt")
name = st.selectbox("Prompt", names, index=names.index(current) if current in names else 0)
st.session_state["prompt"] = name
prompt = load(api.get_prompt, name)
versions = items(load(api.list_versions, name, limit=500))
numbers = [v["version"] for v in versions]
labels: dict = prompt.get("labels") or {}
by_number = {v["version"]: v for v in versions}

st.caption(
    (prompt.get("description") or "No description.")
    + "  ·  " + f"{len(versions)} version(s)"
    + ("  ·  labels: " + ", ".join(f"{k} → v{v}" for k, v in labels.items()) if labels else "")
)

shown = section(["Edit", "Diff", "Labels"], "editor_section")

if shown == "Edit":
    base_number = st.selectbox("Start from version", numbers, format_func=lambda n: f"v{n}: {by_number[n].get('message') or ''}")
    base = by_number[base_number]
    with st.form(f"edit_{name}_{base_number}"):
        template = st.text_area("Template", base.get("template", ""), height=240)
        variables = st.text_area(
            "Declared variables (JSON list; empty to declare them from the template)",
            json.dumps(base.get("variables") or [], indent=2), height=140,
            help='Each: {"name", "type": string|integer|number|boolean|list, "required", "default", "description"}.',
        )
        params = st.text_area("Default params (JSON object)", json.dumps(base.get("params") or {}, indent=2), height=90,
                              help="e.g. {\"max_new_tokens\": 256, \"temperature\": 0.2}")
        message = st.text_input("Message", placeholder="What changed and why")
        if st.form_submit_button("Save as new version", type="primary"):
            parsed_params = parse_json(params, "Default params")
            try:
                parsed_vars = json.loads(variables) if variables.strip() else None
            except json.JSONDecodeError as exc:
                parsed_vars = None
                st.error(f"Declared variables are not valid JSON: {exc.msg} (line {exc.lineno}).")
                parsed_params = None
            if parsed_vars is not None and not isinstance(parsed_vars, list):
                st.error("Declared variables must be a JSON list.")
                parsed_params = None
            if parsed_params is not None:
                saved = act(api.create_version, name, template, variables=parsed_vars or None,
                            params=parsed_params, message=message or None)
                if saved:
                    if saved["version"] in by_number:
                        flash(f"Nothing changed: v{saved['version']} already has this content.")
                    else:
                        flash(f"Saved version {saved['version']}.")
                    st.rerun()

if shown == "Diff":
    if len(numbers) < 2:
        st.info("Only one version so far: save a second one to compare.")
    else:
        left, right, mode = st.columns([1, 1, 2])
        older = left.selectbox("From", numbers, index=1, key="diff_from")
        newer = right.selectbox("To", numbers, index=0, key="diff_to")
        layout = mode.radio("Layout", ["Side by side", "Unified"], horizontal=True)
        if older == newer:
            st.info("Pick two different versions.")
        elif layout == "Unified":
            text = load(api.diff, name, older, newer)
            st.code(text or "(no differences)", language="diff")
        else:
            st.html(side_by_side(by_number[older].get("template", ""), by_number[newer].get("template", ""),
                                 f"v{older}", f"v{newer}"))

if shown == "Labels":
    if labels:
        st.dataframe(pd.DataFrame([{"label": k, "version": v} for k, v in labels.items()]), hide_index=True)
    else:
        st.info("No labels yet: point `production` at a version below.")
    with st.form("move_label"):
        col_label, col_version = st.columns(2)
        label = col_label.text_input("Label", value="production")
        target = col_version.selectbox("Version", numbers)
        if st.form_submit_button("Move label", type="primary"):
            moved = act(api.set_label, name, label.strip(), target)
            if moved:
                st.session_state[f"label_history::{name}::{moved['label']}"] = moved.get("history") or []
                flash(f"'{moved['label']}' now points at v{moved['version']}.")
                st.rerun()
    for label_name, version in labels.items():
        with st.container(border=True):
            head, button = st.columns([4, 1], vertical_alignment="center")
            head.markdown(f"**{label_name}** → v{version}")
            if button.button("Roll back", key=f"rollback_{label_name}"):
                moved = act(api.rollback_label, name, label_name)
                if moved:
                    st.session_state[f"label_history::{name}::{label_name}"] = moved.get("history") or []
                    flash(f"'{label_name}' rolled back to v{moved['version']}.")
                    st.rerun()
            history = st.session_state.get(f"label_history::{name}::{label_name}")
            if history is None:
                history = try_load(api.get_label, name, label_name, default={}).get("history") or []
            if history:
                st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")
