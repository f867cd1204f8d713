"""Pipeline overhead on the tiny causal model: raw `model.generate` vs promptyard over HTTP, uncached and cached.

Run with `make bench-pipeline` (or `.venv/bin/python bench/bench_pipeline.py --help`). A tiny GPT-2 is built on
the spot, the app is served by a real waitress server on a thread, and requests go through httpx like any
client's would: from this process for the uncached runs (interleaved with raw generation), from a separate client
process for the cached ones, as a real client would be (in this process its threads would compete with the
server's for the interpreter lock). Prints one table; see bench/README.md for recorded results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

PROMPT = "def fibonacci(n):\n    "
TARGET_OVERHEAD = 0.10
TARGET_CACHED_P99_MS = 5.0


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def once(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


# The cached client: its own process, one keep-alive connection, latencies (ms) printed as JSON.
CLIENT = """
import json, sys, time
import httpx
url, body, repeat = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
latencies = []
with httpx.Client(base_url=url, timeout=60) as client:
    for _ in range(20):
        client.post("/api/v1/executions", json=body).raise_for_status()
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.post("/api/v1/executions", json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        assert response.json()["cache_hit"], "the cached request was not a cache hit"
print(json.dumps(latencies))
"""


def cached_from_another_process(url: str, body: dict, repeat: int) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CLIENT, url, json.dumps(body), str(repeat)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the cached client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def raw_generate(model_dir: Path, tokens: int):
    """A closure running greedy `model.generate` exactly as a user of transformers would; returns (fn, tokens)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    encoded = tokenizer(PROMPT, return_tensors="pt")
    produced = []

    def run() -> None:
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        produced.append(out.shape[1] - encoded["input_ids"].shape[1])

    return run, produced


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens of each greedy generation")
    parser.add_argument("--repeat", type=int, default=30, help="timed generations per uncached measurement")
    parser.add_argument("--cached-repeat", type=int, default=1000, help="timed requests for the cached measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite in a temp folder)")
    args = parser.parse_args()

    import torch
    from tiny_models import build_tiny_gpt2

    from promptyard import create_app
    from promptyard.db import db
    from promptyard.models import service
    from promptyard.server import serve_in_thread

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="promptyard-bench-"))
    model_dir = work / "tiny-gpt2"
    build_tiny_gpt2(model_dir)

    raw, produced = raw_generate(model_dir, args.tokens)
    # The server generates on its worker threads; the raw baseline runs on a worker thread too, so both see
    # the same torch threading.
    raw_worker = ThreadPoolExecutor(1)

    def raw_on_worker() -> None:
        raw_worker.submit(raw).result()

    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    app = create_app({"PROMPTYARD_HOME": str(work / "home"), "SQLALCHEMY_DATABASE_URI": database_url,
                      "PROMPTYARD_ADMIN_KEY": None,
                      # Hundreds of requests a minute from one address would trip the default rate limit.
                      "PROMPTYARD_RATE_LIMIT": "off"})
    with app.app_context():
        db.create_all()
        service.register_model("tiny-gpt2", "transformers", str(model_dir))
    body = {"model": "tiny-gpt2", "input": PROMPT, "params": {"max_new_tokens": args.tokens, "do_sample": False}}

    with serve_in_thread(app, threads=4) as url, httpx.Client(base_url=url, timeout=120) as client:
        def post(cache: bool) -> dict:
            response = client.post("/api/v1/executions", json={**body, "cache": cache})
            response.raise_for_status()
            return response.json()

        for _ in range(args.warmup):
            raw_on_worker()
            served = post(False)
        # Interleaved, so that load from other processes on the machine hits both measurements alike.
        raw_ms, uncached_ms = [], []
        for _ in range(args.repeat):
            raw_ms.append(once(raw_on_worker))
            uncached_ms.append(once(lambda: post(False)))
        post(True)  # fills the cache
        cached_ms = cached_from_another_process(url, {**body, "cache": True}, args.cached_repeat)
    raw_worker.shutdown()

    raw_p50, served_p50 = statistics.median(raw_ms), statistics.median(uncached_ms)
    overhead = (served_p50 - raw_p50) / raw_p50
    # Each HTTP sample ran right after a raw one: their difference cancels most of the load other processes add.
    paired_ms = statistics.median(u - r for u, r in zip(uncached_ms, raw_ms))
    cached_p99 = percentile(cached_ms, 99)
    rows = [
        ("raw model.generate", raw_ms),
        ("promptyard HTTP, uncached", uncached_ms),
        ("promptyard HTTP, cached *", cached_ms),
    ]
    print(f"database: {database_url.split(':', 1)[0]}; load average before/after: {load_before} / "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"tiny GPT-2, greedy, max_new_tokens={args.tokens} (raw produced {produced[-1]} tokens, "
          f"promptyard {served['tokens_out']}); torch threads={torch.get_num_threads()}")
    print(f"{'measurement':<28}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, samples in rows:
        print(f"{name:<28}{len(samples):>6}{statistics.median(samples):>10.2f}{percentile(samples, 99):>10.2f}"
              f"{statistics.fmean(samples):>10.2f}")
    print(f"uncached overhead (p50): {overhead:+.1%} of raw generation "
          f"(target < {TARGET_OVERHEAD:.0%}: {'met' if overhead < TARGET_OVERHEAD else 'NOT met'})")
    print(f"uncached overhead (median of paired differences): {paired_ms:+.1f} ms = {paired_ms / raw_p50:+.1%} "
          f"of raw p50")
    print("* from a separate client process")
    print(f"cached p99: {cached_p99:.2f} ms (target < {TARGET_CACHED_P99_MS:.0f} ms: "
          f"{'met' if cached_p99 < TARGET_CACHED_P99_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
