"""Form pieces the Workbench builds from the API: version pickers, variable forms, params, run metrics."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from promptyard.client import PromptyardClient
from promptyard.ui.common import act, fmt, items, load

LATEST = "latest"


def target_options(api: PromptyardClient, name: str) -> tuple[list[str], dict]:
    """Choices for which version to run: latest, each label, each version; and the prompt."""
    prompt = load(api.get_prompt, name)
    versions = [v["version"] for v in items(load(api.list_versions, name, limit=500))]
    labels = prompt.get("labels") or {}
    options = [LATEST] + [f"label:{label}" for label in labels] + [f"v{n}" for n in versions]
    return options, prompt


def describe_target(option: str, prompt: dict) -> str:
    latest = (prompt.get("latest_version") or {}).get("version")
    if option == LATEST:
        return f"latest (v{latest})"
    if option.startswith("label:"):
        label = option.split(":", 1)[1]
        return f"label {label} (v{(prompt.get('labels') or {}).get(label)})"
    return option


def target_fields(option: str) -> dict:
    """The execution fields (`version` or `label`) an option stands for."""
    if option.startswith("label:"):
        return {"label": option.split(":", 1)[1]}
    if option.startswith("v"):
        return {"version": int(option[1:])}
    return {}


def resolved_version(api: PromptyardClient, name: str, option: str, prompt: dict) -> dict:
    """The version record an option points at (for its declared variables)."""
    if option.startswith("label:"):
        number = (prompt.get("labels") or {}).get(option.split(":", 1)[1])
    elif option.startswith("v"):
        number = int(option[1:])
    else:
        return prompt.get("latest_version") or {}
    return load(api.get_version, name, number)


def variable_inputs(declared: list[dict], key: str) -> dict[str, Any]:
    """One input per declared variable, typed after its declaration; returns the filled values."""
    values: dict[str, Any] = {}
    for var in declared:
        name, kind = var["name"], var.get("type") or "string"
        label = name + ("" if var.get("required", True) else " (optional)")
        default = var.get("default")
        help_text = var.get("description") or None
        widget_key = f"{key}::{name}"
        if kind == "integer":
            values[name] = int(st.number_input(label, value=int(default or 0), step=1, key=widget_key, help=help_text))
        elif kind == "number":
            values[name] = float(st.number_input(label, value=float(default or 0.0), key=widget_key, help=help_text))
        elif kind == "boolean":
            values[name] = st.checkbox(label, value=bool(default), key=widget_key, help=help_text)
        elif kind == "list":
            text = st.text_area(label + " (one item per line)", "\n".join(map(str, default or [])), key=widget_key,
                                help=help_text)
            values[name] = [line for line in text.splitlines() if line.strip()]
        else:
            text = st.text_area(label, "" if default is None else str(default), key=widget_key, help=help_text,
                                height=100)
            if text or var.get("required", True):
                values[name] = text
    return values


def missing_required(declared: list[dict], values: dict[str, Any]) -> list[str]:
    """Required variables left empty in the form."""
    return [v["name"] for v in declared if v.get("required", True) and values.get(v["name"]) in ("", None, [])]


def params_inputs(key: str, defaults: dict | None = None) -> dict[str, Any]:
    """Generation parameters over the prompt's and model's defaults; empty unless the person overrides them."""
    defaults = defaults or {}
    if defaults:
        st.caption("This version's defaults: " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
    if not st.checkbox("Override parameters for this run", key=f"{key}::override"):
        return {}
    cols = st.columns(4)
    params = {
        "max_new_tokens": int(cols[0].number_input("max_new_tokens", 1, 8192, int(defaults.get("max_new_tokens", 64)),
                                                   key=f"{key}::max_new_tokens")),
        "temperature": float(cols[1].number_input("temperature", 0.0, 2.0, float(defaults.get("temperature", 0.0)),
                                                  step=0.1, key=f"{key}::temperature")),
        "top_p": float(cols[2].number_input("top_p", 0.0, 1.0, float(defaults.get("top_p", 1.0)), step=0.05,
                                            key=f"{key}::top_p")),
        "seed": int(cols[3].number_input("seed", 0, 2**31 - 1, int(defaults.get("seed", 0)), key=f"{key}::seed")),
    }
    params["do_sample"] = params["temperature"] > 0
    return params


def run_metrics(execution: dict) -> None:
    """Cache hit, latency, tokens and cost of one run."""
    cols = st.columns(4)
    cols[0].metric("Cache", "hit" if execution.get("cache_hit") else "miss")
    cols[1].metric("Latency", fmt(execution.get("latency_ms"), " ms", 0))
    cols[2].metric("Tokens in / out", f"{fmt(execution.get('tokens_in'))} / {fmt(execution.get('tokens_out'))}")
    cols[3].metric("Cost", cost_text(execution.get("cost")))
    if execution.get("error"):
        st.error(f"The run failed: {execution['error']}")


def cost_text(cost: float | None) -> str:
    """Cost in the pricing's currency units, in plain decimals (never 7.1e-05); models without pricing cost nothing."""
    if cost is None:
        return "—"
    if cost == 0:
        return "0"
    digits = 2 if abs(cost) >= 1 else 6 if abs(cost) >= 1e-4 else 8
    return f"{cost:.{digits}f}".rstrip("0").rstrip(".") or "0"


def when(iso: str | None) -> str:
    """A timestamp for people: '2026-12-04 19:20:05 UTC' (the API's ISO text, without microseconds)."""
    if not iso:
        return "—"
    text = iso.replace("T", " ")
    return text[:19] + " UTC"


def rating_form(api: PromptyardClient, execution: dict, on_done: Callable[[str], None]) -> None:
    """Rate an execution from 1 to 5 stars with an optional comment; `on_done` gets the thank-you line."""
    with st.form(f"rate_{execution['id']}"):
        rating = st.radio("Rate this output", [1, 2, 3, 4, 5], index=None, horizontal=True,
                          format_func=lambda r: "★" * r)
        comment = st.text_input("Comment (optional)")
        if st.form_submit_button("Submit rating"):
            if rating is None:
                st.error("Pick a rating from 1 to 5 stars first.")
            elif act(api.feedback, execution["id"], rating, comment or None) is not None:
                on_done(f"Thanks: execution {execution['id']} rated {rating}/5.")
