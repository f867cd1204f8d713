"""Profile cached (or uncached) `POST /api/v1/executions` in-process: SQL statements per request and cProfile.

`.venv/bin/python bench/profile_requests.py --model function|tiny-gpt2 [--uncached] [-n 300] [--top 30]`.
Uses Flask's test client (the full WSGI stack, no socket) so the profile shows promptyard's own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

PROMPT = "def fibonacci(n):\n    "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("function", "tiny-gpt2"), default="function")
    parser.add_argument("--uncached", action="store_true", help="profile cache: false requests instead")
    parser.add_argument("-n", type=int, default=300, help="profiled requests")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--callees", default=None, help="also print the callees of functions matching this")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from sqlalchemy import event

    from promptyard import create_app
    from promptyard.db import db
    from promptyard.models import service
    from promptyard.plugins.function import FunctionPlugin

    work = Path(tempfile.mkdtemp(prefix="promptyard-profile-"))
    app = create_app({"PROMPTYARD_HOME": str(work / "home"),
                      "SQLALCHEMY_DATABASE_URI": args.database_url or f"sqlite:///{work / 'p.db'}",
                      "PROMPTYARD_ADMIN_KEY": None, "PROMPTYARD_RATE_LIMIT": "off"})
    with app.app_context():
        db.create_all()
        if args.model == "function":
            service.install_plugin("function", FunctionPlugin(lambda p, params: "a b c " * 20))
        else:
            from tiny_models import build_tiny_gpt2

            build_tiny_gpt2(work / "tiny-gpt2")
            service.register_model("tiny-gpt2", "transformers", str(work / "tiny-gpt2"))
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute",
                     lambda conn, cursor, sql, params, context, many: statements.append(sql))
    body = {"model": args.model, "input": PROMPT, "cache": not args.uncached,
            "params": {"max_new_tokens": args.tokens, "do_sample": False}}
    client = app.test_client()

    def post() -> dict:
        response = client.post("/api/v1/executions", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    for _ in range(5):
        post()
    statements.clear()
    assert post()["cache_hit"] is (not args.uncached)
    print(f"SQL statements for one request ({len(statements)}):")
    for sql in statements:
        print("   ", " ".join(sql.split())[:150])
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.n):
        post()
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"{args.n} requests, {elapsed / args.n * 1000:.2f} ms each (under cProfile)")
    stats = pstats.Stats(profiler).sort_stats(args.sort)
    stats.print_stats(args.top)
    if args.callees:
        stats.print_callees(args.callees)
    started = time.perf_counter()
    for _ in range(args.n):
        post()
    print(f"without the profiler: {(time.perf_counter() - started) / args.n * 1000:.2f} ms per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
