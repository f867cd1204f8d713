"""Models: plugins and registered models with status; register, fix, remove, load, unload, and pull weights."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, items, load, parse_json, show_flash, try_load

POLL_SECONDS = 0.5


def follow_pull(name: str) -> dict | None:
    """Show a progress bar polled from the API until the pull ends; returns its final state."""
    bar = st.progress(0.0, text=f"Pulling {name}…")
    while True:
        pull = act(api.pull_status, name)
        if pull is None or pull["state"] != "running":
            break
        done, total = pull["downloaded_bytes"], pull["total_bytes"]
        of_total = f" of {total / 1e6:.1f} MB" if total else ""
        bar.progress(min(done / total, 1.0) if total else 0.0, text=f"Pulling {name}: {done / 1e6:.1f} MB{of_total}")
        time.sleep(POLL_SECONDS)
    if pull and pull["state"] == "succeeded":
        bar.progress(1.0, text=f"{name} is downloaded.")
    else:
        bar.empty()
    return pull


QUANTIZATIONS = ["(none)", "8bit", "4bit"]


def json_text(value: dict | None) -> str:
    return json.dumps(value or {}, indent=None)


def edit_form(model: dict) -> None:
    """Change a registered model's settings (only what changed is sent), or remove it."""
    name = model["name"]
    with st.form(f"edit::{name}"):
        cols = st.columns(3)
        source = cols[0].text_input("Source", model.get("source") or "", key=f"edit::{name}::source")
        revision = cols[1].text_input("Revision", model.get("revision") or "", key=f"edit::{name}::revision")
        current = model.get("quantization") or "(none)"
        quantization = cols[2].selectbox("Quantization", QUANTIZATIONS, index=QUANTIZATIONS.index(current),
                                         key=f"edit::{name}::quantization")
        cols = st.columns(3)
        options_text = cols[0].text_area("Options (JSON)", json_text(model.get("options")), height=80,
                                         key=f"edit::{name}::options")
        params_text = cols[1].text_area("Default params (JSON)", json_text(model.get("params")), height=80,
                                        key=f"edit::{name}::params")
        pricing_text = cols[2].text_area("Pricing (JSON)", json_text(model.get("pricing")), height=80,
                                         key=f"edit::{name}::pricing")
        if st.form_submit_button("Save changes", type="primary"):
            options = parse_json(options_text, "Options")
            params = parse_json(params_text, "Default params")
            pricing = parse_json(pricing_text, "Pricing")
            if None in (options, params, pricing):
                return
            wanted = {"source": source.strip(), "revision": revision.strip() or None,
                      "quantization": None if quantization == "(none)" else quantization,
                      "options": options, "params": params, "pricing": pricing}
            changes = {key: value for key, value in wanted.items()
                       if value != ((model.get(key) or {}) if key in ("options", "params", "pricing")
                                    else model.get(key))}
            if not changes:
                st.info("Nothing changed.")
            elif (updated := act(api.update_model, name, **changes)) is not None:
                flash(f"Saved {name} ({', '.join(sorted(changes))}): {updated.get('status')}.")
                st.rerun()
    remove_col, archive_col = st.columns(2)
    if remove_col.button("Remove", key=f"remove::{name}",
                         help="Delete it; refused while executions name it (archive it then)."):
        if act(api.remove_model, name) is not None:
            flash(f"Removed {name}.")
            st.rerun()
    if archive_col.button("Archive", key=f"archive::{name}", help="Hide it and refuse new runs; its history stays."):
        if act(api.remove_model, name, archive=True) is not None:
            flash(f"Archived {name}: hidden, its history kept. Register the name again to restore it.")
            st.rerun()


st.title("Models")
show_flash()
api = client(timeout=600.0)

plugins = items(try_load(api.list_plugins, default={"items": []}))
models = items(load(api.list_models))

st.subheader("Registered models")
if not models:
    st.info("No model is registered yet: register one below (a Hugging Face id or local folder for `transformers`, "
            "a server URL for `openai-compatible`).")
else:
    st.dataframe(
        pd.DataFrame([{"name": m["name"], "plugin": m.get("plugin"), "source": m.get("source"),
                       "status": m.get("status"), "quantization": m.get("quantization"),
                       "preset": m.get("is_preset", False)} for m in models]),
        hide_index=True, width="stretch",
    )
    missing = [m["name"] for m in models if m.get("status") == "not_downloaded"]
    if missing:
        st.warning("Weights are not downloaded for: " + ", ".join(missing)
                   + ". Pull them here (or run `promptyard models pull NAME` on the server) before running them.")
    broken = [m for m in models if m.get("status") == "error"]
    for model in broken:
        st.error(f"{model['name']}: {model.get('error') or 'the model could not be loaded.'}")
    names = [m["name"] for m in models]
    by_name = {m["name"]: m for m in models}
    pick, pull_col, load_col, unload_col = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
    chosen = pick.selectbox("Model", names, format_func=lambda n: f"{n} ({by_name[n].get('status')})")
    weights_missing = by_name[chosen].get("status") == "not_downloaded"
    if load_col.button("Load", disabled=weights_missing, help="Pull its weights first." if weights_missing else None):
        with st.spinner(f"Loading {chosen}…"):
            done = act(api.load_model, chosen)
        if done:
            flash(f"{chosen} is {done.get('status')}.")
            st.rerun()
    if unload_col.button("Unload"):
        done = act(api.unload_model, chosen)
        if done:
            flash(f"{chosen} is {done.get('status')}.")
            st.rerun()
    if weights_missing and pull_col.button("Pull", help="Download its weights on the server."):
        pulled = follow_pull(chosen) if act(api.pull_model, chosen) else None
        if pulled and pulled["state"] == "succeeded":
            flash(f"{chosen} is downloaded.")
            st.rerun()
        elif pulled and pulled["state"] == "failed":
            st.error(f"Pulling {chosen} failed: {pulled['error']['message']}")

    with st.expander(f"Fix or remove {chosen}"):
        edit_form(by_name[chosen])

st.subheader("Register a model")
# The built-in local backend first: it is what most people register.
plugin_names = sorted([p["name"] for p in plugins] or ["transformers", "openai-compatible"],
                      key=lambda n: (n != "transformers", n))
with st.form("register_model"):
    cols = st.columns(3)
    name = cols[0].text_input("Name", placeholder="codet5p-220m")
    plugin = cols[1].selectbox("Plugin", plugin_names)
    source = cols[2].text_input("Source", placeholder="Salesforce/codet5p-220m, /models/x or http://host:8000/v1")
    cols = st.columns(3)
    quantization = cols[0].selectbox("Quantization", QUANTIZATIONS)
    revision = cols[1].text_input("Revision", placeholder="main, a tag or a commit (optional)",
                                  help="Hub revision for transformers; for openai-compatible, the served model name "
                                       "if options has no `model`.")
    options_text = cols[2].text_area("Options (JSON)", "{}", height=80,
                                     help='openai-compatible: {"model": "served-name"} (required), optionally '
                                          '"api_key_env"; transformers: {"trust_remote_code": true}, "dtype"...')
    cols = st.columns(2)
    params_text = cols[0].text_area("Default params (JSON)", "{}", height=80)
    pricing_text = cols[1].text_area("Pricing (JSON)", "{}", height=80,
                                     help='{"input_per_1k": 0.001, "output_per_1k": 0.002} or {"gpu_hour": 2.5}')
    if st.form_submit_button("Register", type="primary"):
        params = parse_json(params_text, "Default params")
        pricing = parse_json(pricing_text, "Pricing")
        options = parse_json(options_text, "Options")
        if not name.strip() or not source.strip():
            st.error("A model needs a name and a source.")
        elif plugin == "openai-compatible" and options is not None and not (options.get("model") or revision.strip()):
            st.error('An openai-compatible model needs the name the server serves it under: put it in Options as '
                     '{"model": "served-name"} (or in Revision).')
        elif None not in (params, pricing, options):
            # The API checks the rest (the source's form, the plugin's options) and refuses before saving.
            created = act(api.register_model, name.strip(), plugin, source.strip(),
                          quantization=None if quantization == "(none)" else quantization,
                          params=params or None, pricing=pricing or None, options=options or None,
                          revision=revision.strip() or None)
            if created:
                flash(f"Registered {created['name']} ({created.get('status')}).")
                st.rerun()

st.subheader("Plugins")
if plugins:
    st.dataframe(pd.DataFrame(plugins), hide_index=True, width="stretch")
else:
    st.caption("The API lists no plugins.")
