"""Experiments: create an A/B test from versions and weights; live results per arm, winner when significant."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, fmt, items, load, prompt_names, show_flash, try_load
from promptyard.ui.common import goto_section, section
from promptyard.ui.forms import when

st.title("Experiments")
show_flash()
api = client()

existing = try_load(api.list_experiments, limit=500, default=None)
names = [e["name"] for e in items(existing)]

shown = section(["Results", "New experiment"], "exp_section")

if shown == "New experiment":
    prompts = prompt_names(api)
    if not prompts:
        st.info("An experiment compares versions of a library prompt: create a prompt first.")
    else:
        prompt = st.selectbox("Prompt", prompts, key="exp_prompt")
        versions = [v["version"] for v in items(load(api.list_versions, prompt, limit=500))]
        with st.form("create_experiment"):
            name = st.text_input("Experiment name", placeholder=f"{prompt}-ab")
            chosen = st.multiselect("Versions to compare", versions, default=versions[:2])
            weights = {v: st.number_input(f"Weight of v{v}", min_value=0.0, value=1.0, key=f"w{v}") for v in versions}
            cols = st.columns(2)
            metric = cols[0].selectbox("Metric", ["success_rate", "mean_rating"],
                                       format_func=lambda m: m.replace("_", " "),
                                       help="What decides the winner: runs that succeed, or people's ratings.")
            alpha = cols[1].number_input("Significance level (alpha)", min_value=0.001, max_value=0.5, value=0.05,
                                         step=0.01, format="%.3f",
                                         help="A winner is declared only when the test's p-value is below this.")
            if st.form_submit_button("Create experiment", type="primary"):
                if len(chosen) < 2:
                    st.error("Pick at least two versions to compare.")
                elif not name.strip():
                    st.error("Give the experiment a name.")
                else:
                    arms = [{"version": v, "weight": weights[v]} for v in chosen]
                    created = act(api.create_experiment, name.strip(), prompt, arms, metric=metric,
                                  alpha=float(alpha))
                    if created:
                        st.session_state["experiment"] = created["name"]
                        goto_section("exp_section", "Results")
                        flash(f"Experiment '{created['name']}' created: runs with `experiment` and `subject` pick an arm.")
                        st.rerun()

if shown == "Results":
    if existing is None:
        current = st.text_input("Experiment name", value=st.session_state.get("experiment", ""))
    elif not names:
        st.info("No experiments yet: choose 'New experiment' above.")
        current = ""
    else:
        remembered = st.session_state.get("experiment")
        current = st.selectbox("Experiment", names, index=names.index(remembered) if remembered in names else 0)
    if current:
        st.session_state["experiment"] = current
        experiment = load(api.get_experiment, current)
        running = experiment.get("status") == "running"
        info_col, stop_col = st.columns([4, 1], vertical_alignment="bottom")
        info_col.caption(f"Prompt {experiment.get('prompt')} · {experiment.get('status')} · decided on "
                         f"{str(experiment.get('metric', '')).replace('_', ' ')} at alpha {experiment.get('alpha')}"
                         + ("" if running else f" · stopped {when(experiment.get('stopped_at'))}")
                         + (" · send runs into it from the Workbench (Experiment field)" if running else ""))
        if running and stop_col.button("Stop experiment", help="Runs naming it get no arm any more; results stay."):
            if act(api.stop_experiment, current) is not None:
                flash(f"Experiment '{current}' stopped.")
                st.rerun()

        @st.fragment(run_every=10)
        def live_results() -> None:
            results = load(api.experiment_results, current)
            arms = results.get("arms") or []
            if not arms:
                st.info("No results yet.")
                return
            table = pd.DataFrame(arms)
            table.columns = [str(c).replace("_", " ") for c in table.columns]
            st.dataframe(table, hide_index=True, width="stretch")
            cols = st.columns(3)
            cols[0].metric("Executions", sum(int(a.get("executions") or 0) for a in arms))
            cols[1].metric("p-value", fmt(results.get("p_value"), "", 4))
            winner = results.get("winner")
            if isinstance(winner, dict):
                winner = winner.get("version")
            cols[2].metric("Winner", f"v{winner}" if winner is not None else "none yet")
            if winner is None:
                st.caption("No arm is significantly better yet (the winner appears only when the test is significant).")
            st.caption("Refreshes every 10 seconds.")

        live_results()
