"""Batched evaluation runs on the tiny causal model: batched vs one sample at a time vs raw batched `model.generate`.

Run with `make bench-batch` (or `.venv/bin/python bench/bench_batch.py --help`). A tiny GPT-2 is built on the spot
(the tests' model: 2 layers, 128-token context) and registered in a fresh SQLite instance; ten short code tasks
make a custom dataset. Each round, in this one process and on the same loaded weights:

- **batched**: `runs.execute_run` of an evaluation run with n=16 sampled completions per task (temperature 0.8,
  top_p 0.95), through the transformers batch call (rows per generate call: `--batch-rows`);
- **one at a time**: the same run with every sample through the single-request pipeline (`execute`), as runs
  were generated before batching;
- **raw**: plain `model.generate` on the same batches (the same prompts, `num_return_sequences`, left padding,
  the same params), with no promptyard around it.

Both runs record every sample as an execution and run it in the sandbox; the table gives the generation phase (what
batching changes) and the whole run (sandbox included) for each. Goals: batched generation at least 4x faster than
one at a time, and within 1.5x of raw batched generate. Prints one table; results in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASKS = [
    ("def add(a, b):\n", "add", "assert candidate(1, 2) == 3"),
    ("def is_even(n):\n", "is_even", "assert candidate(4) is True"),
    ("def square(x):\n", "square", "assert candidate(3) == 9"),
    ("def first(items):\n", "first", "assert candidate([5, 6]) == 5"),
    ("def neg(x):\n", "neg", "assert candidate(2) == -2"),
    ("def total(numbers):\n    # Return the sum of a list of numbers\n", "total", "assert candidate([1, 2]) == 3"),
    ("def fib(n):\n", "fib", "assert candidate(10) == 55"),
    ("def last(items):\n", "last", "assert candidate([5, 6]) == 6"),
    ("def double(x):\n", "double", "assert candidate(2) == 4"),
    ("def is_empty(items):\n", "is_empty", "assert candidate([]) is True"),
]
PARAMS = {"temperature": 0.8, "top_p": 0.95}
TARGET_VS_SINGLE = 4.0
TARGET_VS_RAW = 1.5


def write_dataset(folder: Path) -> Path:
    path = folder / "short.jsonl"
    path.write_text("".join(json.dumps({
        "task_id": f"short/{i}", "prompt": prompt, "entry_point": entry,
        "tests": f"def check(candidate):\n    {test}\n",
    }) + "\n" for i, (prompt, entry, test) in enumerate(TASKS)))
    return path


class Timed:
    """An on_progress callback noting when generation ended (the first 'executing' event)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.generated_at: float | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase == "executing" and self.generated_at is None:
            self.generated_at = time.perf_counter()


def timed_run(app, n: int, one_at_a_time: bool) -> dict:
    from promptyard.db import db
    from promptyard.db.models import Execution
    from promptyard.evals import runs
    from promptyard.evals.generation import pipeline_generate

    app.config["PROMPTYARD_EVAL_GENERATE"] = pipeline_generate if one_at_a_time else None
    run = runs.create_run("short", "tiny", n=n, k=[1, 10], params=PARAMS, submit=False)
    clock = Timed()
    body = runs.execute_run(run.id, on_progress=clock)
    ended = time.perf_counter()
    if body["status"] != "succeeded" or body["generation_failures"]:
        raise SystemExit(f"the run did not succeed: {body['error'] or body['generation_failures']}")
    ids = [row.execution_id for row in runs.list_samples(run.id, limit=10_000)[0]]
    tokens = sum(row.tokens_out for row in db.session.query(Execution).filter(Execution.id.in_(ids)))
    return {"generate_s": clock.generated_at - clock.started, "run_s": ended - clock.started, "tokens": tokens,
            "pass@1": body["pass_at_k"]["pass@1"]}


def raw_batched(model_dir: Path, n: int, max_new_tokens: int, rows: int) -> dict:
    """Plain transformers on the same batches: prompts of whole tasks, `rows` sequences per generate call."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    per_call = max(1, rows // n)
    prompts = [prompt for prompt, _, _ in TASKS]
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(prompts), per_call):
        inputs = tokenizer(prompts[start:start + per_call], return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=True, temperature=PARAMS["temperature"],
                                    top_p=PARAMS["top_p"], max_new_tokens=max_new_tokens, num_return_sequences=n,
                                    pad_token_id=tokenizer.eos_token_id)
        new = output[:, inputs["input_ids"].shape[1]:]
        tokens += int((new != tokenizer.eos_token_id).sum())
    return {"generate_s": time.perf_counter() - started, "tokens": tokens}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of all three (default 5).")
    parser.add_argument("-n", type=int, default=16, help="Samples per task (default 16).")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="Tokens per sample (default 48).")
    parser.add_argument("--batch-rows", type=int, default=32, help="Sequences per generate call (default 32).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2).")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    import torch

    torch.set_num_threads(args.threads)
    from promptyard import create_app
    from promptyard.db import db
    from promptyard.evals.datasets import register_custom
    from promptyard.execution.pipeline import ExecutionRequest, execute
    from promptyard.models.service import register_model
    from tests.fixtures.tiny_models import build_tiny_gpt2

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        model_dir = build_tiny_gpt2(folder / "tiny-gpt2")
        app = create_app({"PROMPTYARD_HOME": str(folder / "home"),
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
                          "PROMPTYARD_ADMIN_KEY": None, "PROMPTYARD_EVAL_BATCH_SIZE": 64})
        with app.app_context():
            db.create_all()
            register_custom(app.config["PROMPTYARD_HOME"], "short", str(write_dataset(folder)))
            register_model("tiny", "transformers", str(model_dir), params={"max_new_tokens": args.max_new_tokens},
                           options={"max_batch_size": args.batch_rows})
            # Load the model and warm it up before anything is timed.
            execute(ExecutionRequest(model="tiny", input=TASKS[0][0], params={"max_new_tokens": 4}, cache=False))
            raw_batched(model_dir, args.n, 4, args.batch_rows)
            results: dict[str, list[dict]] = {"batched": [], "single": [], "raw": []}
            for round_number in range(args.rounds):
                arms = {
                    "raw": lambda: raw_batched(model_dir, args.n, args.max_new_tokens, args.batch_rows),
                    "batched": lambda: timed_run(app, args.n, one_at_a_time=False),
                    "single": lambda: timed_run(app, args.n, one_at_a_time=True),
                }
                # The order turns each round, so that no arm always runs first (or right after the slow one).
                names = list(arms)
                for name in names[round_number % 3:] + names[:round_number % 3]:
                    results[name].append(arms[name]())
                print(f"round {round_number + 1}/{args.rounds}: " + ", ".join(
                    f"{name} {rows[-1]['generate_s']:.2f} s" for name, rows in results.items()), file=sys.stderr)
            db.engine.dispose()

    samples = len(TASKS) * args.n
    gen = {name: [r["generate_s"] for r in rows] for name, rows in results.items()}
    vs_single = [s / b for s, b in zip(gen["single"], gen["batched"])]
    vs_raw = [b / r for b, r in zip(gen["batched"], gen["raw"])]
    run_ratio = [s["run_s"] / b["run_s"] for s, b in zip(results["single"], results["batched"])]
    print(f"\n{len(TASKS)} tasks x n={args.n} = {samples} samples of {args.max_new_tokens} new tokens at most; "
          f"{args.batch_rows} rows per generate call; {args.rounds} rounds; torch threads {args.threads}. "
          "Seconds: median (min-max).\n")
    print(f"| {'':34} | {'generation s':>22} | {'whole run s':>22} | {'tokens/s':>9} |")
    print(f"|{'-' * 36}|{'-' * 24}|{'-' * 24}|{'-' * 11}|")
    for name, label in (("raw", "raw batched model.generate"), ("batched", "promptyard run, batched"),
                        ("single", "promptyard run, one at a time")):
        rows = results[name]
        whole = spread([r["run_s"] for r in rows]) if name != "raw" else "-"
        rate = statistics.median(r["tokens"] / r["generate_s"] for r in rows)
        print(f"| {label:34} | {spread(gen[name]):>22} | {whole:>22} | {rate:>9.0f} |")
    print(f"\nbatched vs one at a time, generation: {spread(vs_single)}x (goal >= {TARGET_VS_SINGLE:g}x: "
          f"{'met' if statistics.median(vs_single) >= TARGET_VS_SINGLE else 'NOT met'}); whole run "
          f"{spread(run_ratio)}x")
    print(f"batched run vs raw batched generate, generation: {spread(vs_raw)}x (goal <= {TARGET_VS_RAW:g}x: "
          f"{'met' if statistics.median(vs_raw) <= TARGET_VS_RAW else 'NOT met'})")
    print(f"pass@1 (random weights, expected 0): batched {results['batched'][-1]['pass@1']}, "
          f"one at a time {results['single'][-1]['pass@1']}")


if __name__ == "__main__":
    main()
