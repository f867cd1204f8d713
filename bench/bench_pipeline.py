"""Pipeline overhead on the tiny causal model: raw `model.generate` vs promptyard over HTTP, uncached and cached.

Run with `make bench-pipeline` (or `.venv/bin/python bench/bench_pipeline.py --help`). A tiny GPT-2 is built on
the spot and promptyard serves it from its own process on a real waitress server, as in production. This process
is the client: it runs raw `model.generate` on its main thread, as a user of transformers would, interleaved with
uncached requests, then the cached requests. Requests go over one keep-alive connection with the standard library's
`http.client` (httpx spends ~0.3 ms more per request in the client itself, which is not the server's latency).
Prints one table; see bench/README.md for recorded results.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

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


class Client:
    """POST JSON over one keep-alive connection; the answer's JSON, or an error naming the status."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def post(self, path: str, body: dict) -> dict:
        self.connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status >= 400:
            raise RuntimeError(f"POST {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data)


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


def serve(work: Path, database_url: str) -> None:
    """The server process: promptyard on a real waitress server, its port printed on the first line of stdout."""
    from promptyard import create_app
    from promptyard.db import db
    from promptyard.models import service
    from promptyard.server import create_server

    app = create_app({"PROMPTYARD_HOME": str(work / "home"), "SQLALCHEMY_DATABASE_URI": database_url,
                      "PROMPTYARD_ADMIN_KEY": None,
                      # Hundreds of requests a minute from one address would trip the default rate limit.
                      "PROMPTYARD_RATE_LIMIT": "off"})
    with app.app_context():
        db.create_all()
        service.register_model("tiny-gpt2", "transformers", str(work / "tiny-gpt2"))
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    print(server.effective_port, flush=True)
    server.run()


@contextmanager
def server_process(work: Path, database_url: str) -> Iterator[str]:
    """promptyard served from its own process, as in production: the client's work never competes with the
    server's threads for one interpreter lock. Yields the base URL."""
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(work), "--database-url", database_url],
                               stdout=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the server process did not start (exit code {process.wait()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens of each greedy generation")
    parser.add_argument("--repeat", type=int, default=100, help="timed generations per uncached measurement")
    parser.add_argument("--cached-repeat", type=int, default=1000, help="timed requests for the cached measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pause-ms", type=float, default=5,
                        help="pause after each uncached sample: torch's OpenMP threads spin a little after a "
                             "generation, and without a pause they would take CPU from the next sample")
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite in a temp folder)")
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)  # the server process's mode
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.database_url)
        return 0

    # The raw baseline runs with the OpenMP settings promptyard gives its own processes (see plugins/openmp.py), so
    # that the comparison measures the pipeline, not a runtime setting.
    from promptyard.plugins.openmp import shorten_spin_wait

    shorten_spin_wait()
    import torch
    from tiny_models import build_tiny_gpt2

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="promptyard-bench-"))
    model_dir = work / "tiny-gpt2"
    build_tiny_gpt2(model_dir)
    raw, produced = raw_generate(model_dir, args.tokens)
    database_url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    body = {"model": "tiny-gpt2", "input": PROMPT, "params": {"max_new_tokens": args.tokens, "do_sample": False}}

    with server_process(work, database_url) as url:
        client = Client(url)

        def post(cache: bool) -> dict:
            return client.post("/api/v1/executions", {**body, "cache": cache})

        for _ in range(args.warmup):
            raw()
            served = post(False)
        # Interleaved, so that load from other processes on the machine hits both measurements alike.
        raw_ms, uncached_ms = [], []
        for _ in range(args.repeat):
            raw_ms.append(once(raw))
            time.sleep(args.pause_ms / 1000)
            uncached_ms.append(once(lambda: post(False)))
            time.sleep(args.pause_ms / 1000)
        post(True)  # fills the cache
        cached_ms = []
        for index in range(20 + args.cached_repeat):  # the first 20 warm up
            started = time.perf_counter()
            answer = post(True)
            if index >= 20:
                cached_ms.append((time.perf_counter() - started) * 1000)
            if not answer["cache_hit"]:
                raise RuntimeError("a cached request was not a cache hit")

    raw_p50, served_p50 = statistics.median(raw_ms), statistics.median(uncached_ms)
    overhead = (served_p50 - raw_p50) / raw_p50
    # Each HTTP sample ran right after a raw one: their difference cancels most of the load other processes add.
    paired_ms = statistics.median(u - r for u, r in zip(uncached_ms, raw_ms))
    cached_p99 = percentile(cached_ms, 99)
    rows = [
        ("raw model.generate", raw_ms),
        ("promptyard HTTP, uncached", uncached_ms),
        ("promptyard HTTP, cached", cached_ms),
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
    print(f"cached p99: {cached_p99:.2f} ms (target < {TARGET_CACHED_P99_MS:.0f} ms: "
          f"{'met' if cached_p99 < TARGET_CACHED_P99_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
