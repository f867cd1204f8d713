"""Evaluations: start HumanEval/MBPP runs, watch progress, pass@k, per-task drill-down, compare two runs."""

from __future__ import annotations

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

if shown == "Start a run":
    models = model_names(api)
    if not models:
        st.info("Register a model on the Models page first.")
    else:
        prompts = ["(none: the dataset's own prompt)", *prompt_names(api)]
        with st.form("start_eval"):
            cols = st.columns(3)
            dataset = cols[0].selectbox("Dataset", ["humaneval", "mbpp"])
            model = cols[1].selectbox("Model", models)
            prompt = cols[2].selectbox("Prompt", prompts)
            cols = st.columns(4)
            version = cols[0].number_input("Prompt version", min_value=0, value=0, help="0: the latest")
            n = cols[1].number_input("Samples per task (n)", min_value=1, value=1)
            k_text = cols[2].text_input("k values", value="1", help="Comma-separated, each at most n.")
            limit = cols[3].number_input("First N tasks", min_value=0, value=10, help="0: every task")
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
                                  n=int(n), k=ks, limit=int(limit) or None)
                    if started:
                        st.session_state["eval_run"] = started["id"]
                        goto_section("eval_section", "Runs")
                        flash(f"Run {started['id']} started.")
                        st.rerun()


def samples_view(run_id: int) -> None:
    samples = items(load(api.eval_samples, run_id, limit=500))
    if not samples:
        st.caption("No samples recorded.")
        return
    st.markdown("**Per task**")
    table = pd.DataFrame([{"task": s.get("task_id"), "sample": s.get("sample_index"), "passed": s.get("passed"),
                           "verdict": s.get("verdict"), "result": s.get("result")} for s in samples])
    st.dataframe(table, hide_index=True, width="stretch")
    index = st.selectbox("Task", range(len(samples)), format_func=lambda i: f"{samples[i].get('task_id')}"
                         f" · {'passed' if samples[i].get('passed') else 'failed'}", key="sample_pick")
    sample = samples[index]
    st.code(sample.get("completion") or "", language="python")
    verdict = sample.get("verdict") or ("passed" if sample.get("passed") else "failed")
    detail = f" ({sample['result']})" if sample.get("result") and sample.get("result") != verdict else ""
    (st.success if sample.get("passed") else st.warning)(f"Verdict: {verdict}{detail}")


def comparison_view(comparison: dict) -> None:
    """pass@1 of both runs, the gap, McNemar's p-value and the bootstrap interval; then the tasks that differ."""
    mcnemar = comparison.get("mcnemar") or {}
    ci = (comparison.get("bootstrap") or {}).get("ci95")
    cols = st.columns(5)
    cols[0].metric(f"pass@1 run #{comparison.get('a')}", fmt(comparison.get("a_pass_at_1"), "", 3))
    cols[1].metric(f"pass@1 run #{comparison.get('b')}", fmt(comparison.get("b_pass_at_1"), "", 3))
    cols[2].metric("Difference (B − A)", fmt(comparison.get("difference"), "", 3))
    cols[3].metric("McNemar p-value", fmt(mcnemar.get("p_value"), "", 4))
    cols[4].metric("95% CI of the gap", f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—")
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


def progress_fraction(run: dict) -> float:
    """The run's progress between 0 and 1, whether the API gives a fraction, a percentage or done/total."""
    progress = run.get("progress") or 0
    if isinstance(progress, dict):
        done, total = progress.get("done") or progress.get("completed") or 0, progress.get("total") or 0
        fraction = done / total if total else 0.0
    else:
        fraction = float(progress)
        fraction = fraction / 100 if fraction > 1 else fraction
    if run.get("status") in FINISHED and run.get("status") != "failed":
        fraction = 1.0
    return min(max(fraction, 0.0), 1.0)


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
            fraction = progress_fraction(run)
            st.progress(fraction, text=f"{run.get('status')} · {fraction:.0%} done")
            if run.get("error"):
                st.error(f"The run failed: {run['error']}")
            pass_at_k = run.get("pass_at_k") or {}
            if pass_at_k:
                st.markdown("**pass@k**")
                st.dataframe(pd.DataFrame([{"k": k, "pass rate": v} for k, v in pass_at_k.items()]), hide_index=True)
            if run.get("status") in FINISHED:
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
