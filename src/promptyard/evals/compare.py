"""Compare two evaluation runs task by task, with a paired test: exact McNemar and a paired bootstrap."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from promptyard.errors import Conflict, Unprocessable
from promptyard.evals.runs import get_run, task_counts


def compare_runs(a_id: int, b_id: int, *, resamples: int = 2000, seed: int = 0) -> dict:
    """Per-task pass@1 of both runs, McNemar's exact test on per-task majority pass, a bootstrap CI of the gap."""
    a, b = get_run(a_id), get_run(b_id)
    for run in (a, b):
        if run.status != "succeeded":
            raise Conflict(f"Run {run.id} is {run.status}; only finished runs can be compared.", code="run_not_finished")
    if a.dataset != b.dataset:
        raise Unprocessable(
            f"Runs {a.id} and {b.id} use different datasets ({a.dataset}, {b.dataset}).", code="datasets_differ"
        )
    counts_a, counts_b = task_counts(a.id), task_counts(b.id)
    shared = sorted(set(counts_a) & set(counts_b))
    if not shared:
        raise Unprocessable("The runs have no task in common.", code="no_common_tasks")
    rate_a = np.array([counts_a[t][1] / counts_a[t][0] for t in shared])
    rate_b = np.array([counts_b[t][1] / counts_b[t][0] for t in shared])
    tasks = [
        {"task_id": t, "a_pass_at_1": float(x), "b_pass_at_1": float(y), "difference": float(y - x)}
        for t, x, y in zip(shared, rate_a, rate_b)
        if x != y
    ]
    # McNemar: only discordant tasks (passed by one run's majority, not the other's) carry information.
    pass_a, pass_b = rate_a >= 0.5, rate_b >= 0.5
    only_a, only_b = int(np.sum(pass_a & ~pass_b)), int(np.sum(~pass_a & pass_b))
    discordant = only_a + only_b
    p_value = float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue) if discordant else 1.0
    rng = np.random.default_rng(seed)
    gaps = rate_b - rate_a
    draws = rng.integers(0, len(gaps), size=(resamples, len(gaps)))
    means = gaps[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "a": a.id,
        "b": b.id,
        "dataset": a.dataset,
        "tasks_compared": len(shared),
        "a_pass_at_1": float(rate_a.mean()),
        "b_pass_at_1": float(rate_b.mean()),
        "difference": float(gaps.mean()),
        "tasks": tasks,
        "mcnemar": {"only_a": only_a, "only_b": only_b, "p_value": p_value},
        "bootstrap": {"resamples": resamples, "ci95": [float(low), float(high)]},
    }
