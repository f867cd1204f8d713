"""Workbench: run a prompt (or raw input) on a model with streaming output; compare side by side; rate."""

from __future__ import annotations

import re

import streamlit as st

from promptyard.client import PromptyardAPIError, PromptyardConnectionError
from promptyard.ui.common import act, client, flash, items, load, prompt_names, show_api_error, \
    show_connection_error, show_flash, try_load
from promptyard.ui.common import section
from promptyard.ui.forms import describe_target, missing_required, params_inputs, rating_form, resolved_version, \
    run_metrics, target_fields, target_options, variable_inputs

VERSION_CHOICE = re.compile(r"v\d+|label:[\w.-]+")

st.title("Workbench")
show_flash()
api = client(timeout=300.0)

registered = items(load(api.list_models))
models = [m["name"] for m in registered]
if not models:
    st.info("No model is registered yet: register one on the Models page, then come back to run prompts.")
    st.stop()
STATUS_OF = {m["name"]: m.get("status") for m in registered}
READY = ("available", "loaded")
UNREADY_NOTE = {"not_downloaded": "not downloaded", "error": "unavailable"}


def model_label(name: str) -> str:
    """A model with a note when it cannot run as it is (weights missing, server down)."""
    note = UNREADY_NOTE.get(STATUS_OF.get(name) or "")
    return f"{name} ({note})" if note else name


def default_model(wanted: str | None) -> str:
    """The prompt version's own `model` param when registered, else the first model that can run now."""
    if wanted in models:
        return wanted
    return next((m for m in models if STATUS_OF.get(m) in READY), models[0])


def model_picker(label: str, key: str, source_key: str, offset: int = 0) -> str:
    """A model select that defaults to the version's model (or a ready one). Its widget is keyed by the version, so
    that choosing another version starts from that version's default, with no session state set behind its back."""
    wanted = st.session_state.get(f"{source_key}::version_model")
    target = st.session_state.get(f"{source_key}::version_id")
    first = default_model(wanted)
    default = first if offset == 0 else next((m for m in models if m != first and STATUS_OF.get(m) in READY), first)
    chosen = st.selectbox(label, models, index=models.index(default), key=f"{key}::{target}::{wanted}",
                          format_func=model_label)
    if STATUS_OF.get(chosen) not in READY:
        st.caption(f"`{chosen}` is {UNREADY_NOTE.get(STATUS_OF.get(chosen) or '', STATUS_OF.get(chosen))}: "
                   "see the Models page (pull its weights or fix it) before running it.")
    return chosen


def pick_source(key: str) -> dict | None:
    """Prompt and version (or raw input) plus variables: the execution fields, or None if not ready."""
    names = prompt_names(api)
    modes = ["Library prompt", "Raw input"] + (["Experiment"] if key == "run" else [])
    mode = st.radio("Input", modes, horizontal=True, key=f"{key}::mode", index=0 if names else 1)
    if mode == "Experiment":
        return pick_experiment(key)
    if mode == "Raw input":
        st.session_state[f"{key}::version_model"] = st.session_state[f"{key}::version_id"] = None
        text = st.text_area("Input text", key=f"{key}::raw", height=160, placeholder="def fibonacci(n):")
        return {"input": text} if text.strip() else None
    if not names:
        st.info("The library is empty: create a prompt on the Library page, or use raw input.")
        return None
    current = st.session_state.get("prompt")
    name = st.selectbox("Prompt", names, index=names.index(current) if current in names else 0, key=f"{key}::prompt")
    options, prompt = target_options(api, name)
    option = st.selectbox("Version", options, format_func=lambda o: describe_target(o, prompt), key=f"{key}::target")
    version = resolved_version(api, name, option, prompt)
    st.session_state[f"{key}::defaults"] = version.get("params") or {}
    st.session_state[f"{key}::version_model"] = (version.get("params") or {}).get("model")
    st.session_state[f"{key}::version_id"] = (name, version.get("version"))
    declared = version.get("variables") or []
    variables = {}
    if declared:
        st.markdown("**Variables**")
        variables = variable_inputs(declared, key=f"{key}::{name}")
        missing = missing_required(declared, variables)
        if missing:
            st.caption("Fill in " + ", ".join(f"`{m}`" for m in missing) + " to run.")
            return None
    return {"prompt": name, **target_fields(option), "variables": variables}


def pick_experiment(key: str) -> dict | None:
    """A running experiment and a subject: the experiment picks the version (the same one for a subject each time)."""
    running = [e for e in items(try_load(api.list_experiments, limit=500, default={"items": []}))
               if e.get("status") == "running"]
    st.session_state[f"{key}::version_model"] = st.session_state[f"{key}::version_id"] = None
    if not running:
        st.info("No experiment is running: create one on the Experiments page.")
        return None
    by_name = {e["name"]: e for e in running}
    cols = st.columns(2)
    name = cols[0].selectbox("Experiment", list(by_name), key=f"{key}::experiment",
                             format_func=lambda n: f"{n} ({by_name[n]['prompt']})")
    subject = cols[1].text_input("Subject", key=f"{key}::subject", placeholder="user-42",
                                 help="Who the run is for: a subject always gets the same arm. Blank: a random arm.")
    experiment = by_name[name]
    arm = (experiment.get("arms") or [{}])[0].get("version")
    version = load(api.get_version, experiment["prompt"], arm) if arm else {}
    declared = version.get("variables") or []
    variables = {}
    if declared:
        st.markdown("**Variables**")
        variables = variable_inputs(declared, key=f"{key}::exp::{experiment['prompt']}")
        missing = missing_required(declared, variables)
        if missing:
            st.caption("Fill in " + ", ".join(f"`{m}`" for m in missing) + " to run.")
            return None
    return {"experiment": name, "subject": subject.strip() or None, "variables": variables}


def stream_run(fields: dict, model: str, params: dict, cache: bool) -> None:
    """Run with the output streaming into the page, then keep the record for rating."""
    stream = api.stream(model, **fields, params=params or None, cache=cache)
    st.markdown("**Output**")
    try:
        st.write_stream(stream)
    except PromptyardConnectionError as exc:
        show_connection_error(exc)
        return
    except PromptyardAPIError as exc:
        show_api_error(exc)
        return
    if stream.execution:
        st.session_state["last_execution"] = stream.execution


def thank(message: str) -> None:
    flash(message)
    st.rerun()


shown = section(["Run", "Compare side by side"], "bench_section")

if shown == "Run":
    fields = pick_source("run")
    model = model_picker("Model", "run::model", "run")
    with st.expander("Parameters", expanded=False):
        params = params_inputs("run", st.session_state.get("run::defaults"))
        cache = st.checkbox("Use the response cache", value=True, key="run::cache")
    ran_now = st.button("Run", type="primary", disabled=fields is None)
    if ran_now:
        st.session_state.pop("last_execution", None)
        stream_run(fields, model, params, cache)
    last = st.session_state.get("last_execution")
    if last:
        if not ran_now:
            st.markdown("**Output**")
            st.code(last.get("output") or "", language=None, wrap_lines=True)
        st.caption(f"Execution {last['id']} · {last.get('prompt') or 'raw input'}"
                   + (f" v{last['version']}" if last.get("version") else "")
                   + f" · {last.get('model', '')} · {last.get('status', '')}")
        run_metrics(last)
        rating_form(api, last, thank)

if shown == "Compare side by side":
    st.caption("Run the same variables through two versions or two models and compare the outputs.")
    fields = pick_source("cmp")
    left, right = st.columns(2)
    with left:
        model_a = model_picker("Model A", "cmp::model_a", "cmp")
        option_a = st.text_input("Version A (blank: as chosen above; `label:production` or `v2`)", key="cmp::ver_a")
    with right:
        model_b = model_picker("Model B", "cmp::model_b", "cmp", offset=1)
        option_b = st.text_input("Version B (blank: as chosen above)", key="cmp::ver_b")
    with st.expander("Parameters", expanded=False):
        params_cmp = params_inputs("cmp", st.session_state.get("cmp::defaults"))
    if st.button("Run both", type="primary", disabled=fields is None):
        results = []
        for model_name, option in ((model_a, option_a), (model_b, option_b)):
            run_fields = dict(fields)
            if option.strip() and not VERSION_CHOICE.fullmatch(option.strip()):
                st.error(f"'{option}' is not a version choice: write `v2` or `label:production`.")
                results = []
                break
            if option.strip() and "prompt" in run_fields:
                run_fields.pop("version", None)
                run_fields.pop("label", None)
                run_fields.update(target_fields(option.strip()))
            results.append(act(api.execute, model_name, **run_fields, params=params_cmp or None))
        st.session_state["compare_results"] = results
    for column, result in zip(st.columns(2), st.session_state.get("compare_results") or []):
        with column:
            if result:
                st.markdown(f"**{result.get('model')}** · {result.get('prompt') or 'raw input'}"
                            + (f" v{result['version']}" if result.get("version") else "")
                            + f" · {result.get('status')}")
                st.code(result.get("output") or "", language=None, wrap_lines=True)
                run_metrics(result)
