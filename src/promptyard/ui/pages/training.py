"""Training: pick a base model and training data (with the counts its filters give), start a LoRA fine-tuning,
watch its loss and progress, and see the new model's evaluations beside its base's."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from promptyard.ui.common import act, client, flash, items, load, show_flash



def _significance(rows: list[dict], base: str, tuned: str) -> None:
    """For each dataset both models were evaluated on, the latest runs compared with a paired test."""
    latest = {(row["model"], row["dataset"]): row["run"] for row in sorted(rows, key=lambda r: r["run"])}
    for (model, dataset), run in latest.items():
        if model != base or (tuned, dataset) not in latest:
            continue
        report = act(api.compare_evals, run, latest[(tuned, dataset)])
        if report:
            st.caption(f"{dataset}: pass@1 {report['a_pass_at_1']:.3f} -> {report['b_pass_at_1']:.3f} "
                       f"({report['difference']:+.3f}), McNemar p = {report['mcnemar']['p_value']:.3g}, "
                       f"95% CI of the gap {report['bootstrap']['ci95'][0]:+.3f} to "
                       f"{report['bootstrap']['ci95'][1]:+.3f}")


st.title("Training")
show_flash()
api = client()

models = items(load(api.list_models))
trainable = [m["name"] for m in models if m["plugin"] == "transformers" and not m["options"].get("adapter")]
datasets = [d["name"] for d in items(load(api.list_datasets))]

st.subheader("Start a LoRA fine-tuning")
if not trainable:
    st.info("Register a transformers model on the Models page first: only transformers models can be fine-tuned.")
else:
    cols = st.columns(3)
    base = cols[0].selectbox("Base model", trainable)
    method = cols[1].selectbox("Method", ["sft", "kto", "dpo"], help="SFT on good answers; KTO on good vs bad; "
                               "DPO on pairs of answers to the same input.")
    name = cols[2].text_input("New model name", value=f"{base}-lora" if base else "")
    sources = st.multiselect("Data from", ["history", "evals", "dataset"], default=["history", "evals"])
    filters: dict = {"source": sources}
    if "dataset" in sources:
        filters["dataset"] = st.selectbox("Dataset (its reference solutions)", datasets)
    model_filter = st.text_input("Only records of model (optional)")
    if model_filter:
        filters["model"] = model_filter
    preview = act(api.training_data, method, rows=3, **filters) if sources else None
    if preview:
        counts = ", ".join(f"{source}: {n}" for source, n in preview["counts"].items())
        st.caption(f"{preview['rows']} {method} rows ({counts}); {preview['duplicates_dropped']} duplicates dropped.")
    params_cols = st.columns(4)
    params = {
        "r": int(params_cols[0].number_input("r (rank)", 1, 256, 16)),
        "learning_rate": float(params_cols[1].number_input("learning_rate", 1e-6, 1.0, 2e-4, format="%.6f")),
        "max_steps": int(params_cols[2].number_input("max_steps (-1: epochs)", -1, 100000, -1)),
        "num_train_epochs": float(params_cols[3].number_input("num_train_epochs", 0.1, 100.0, 3.0)),
    }
    if st.button("Start training", type="primary", disabled=not preview):
        started = act(api.start_training, base, name, method=method, data=filters, params=params)
        if started:
            flash(f"Training {started['id']} started: {method} of {base} -> {name}.")
            st.rerun()

st.subheader("Trainings")
trainings = items(load(api.list_trainings, limit=100))
if not trainings:
    st.info("No training yet.")
for training in trainings:
    progress = training["progress"]
    title = (f"#{training['id']} {training['method']} {training['base_model']} -> {training['model']}: "
             f"{training['status']} ({progress['step']}/{progress['total']} steps)")
    with st.expander(title, expanded=training is trainings[0]):
        if progress["total"]:
            st.progress(min(progress["step"] / progress["total"], 1.0))
        if training["losses"]:
            st.line_chart(pd.DataFrame(training["losses"]).set_index("step")["loss"])
        if training["error"]:
            st.error(training["error"])
        if training["status"] in ("queued", "running") and st.button("Cancel", key=f"cancel-{training['id']}"):
            if act(api.cancel_training, training["id"]):
                flash(f"Training {training['id']} is being cancelled.")
                st.rerun()
        if training["status"] == "succeeded":
            runs = items(load(api.list_evals, limit=200))
            rows = []
            for model in (training["base_model"], training["model"]):
                for run in runs:
                    if run["model"] == model and run["status"] == "succeeded":
                        rows.append({"model": model, "dataset": run["dataset"], "run": run["id"],
                                     **run["pass_at_k"]})
            if rows:
                st.caption("Evaluations of the new model beside its base")
                st.dataframe(pd.DataFrame(rows), hide_index=True)
                _significance(rows, training["base_model"], training["model"])
            else:
                st.caption(f"Evaluate {training['model']} and {training['base_model']} on the Evaluations page "
                           f"to compare them.")
