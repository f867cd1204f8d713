"""Runs one sample's program inside the sandboxed child and reports how it ended, with proof it finished.

The proof is a per-sample random nonce the worker checks: it is written only after the last test statement,
so an early exit (sys.exit, os._exit, a killed parent) or a report forged from a guess never counts as passed.
Limit: the nonce lives in this process, so code that deliberately walks the interpreter's frames or heap could
find it; the sandbox contains such code, but the verdict is then only as honest as the sample.
"""

from __future__ import annotations

import builtins
import json
import os
import sys

# Exceptions reported as their own verdicts; everything else is `error` with its type.
_VERDICT_BY_EXCEPTION = {AssertionError: "failed", MemoryError: "memory"}


def _verdict_for(exc: BaseException) -> str:
    for kind, verdict in _VERDICT_BY_EXCEPTION.items():
        if isinstance(exc, kind):
            return verdict
    return "error"


def run_program(solution: str, tests: str, result_fd: int, nonce: bytearray) -> None:
    """Exec the solution, restore pristine builtins, exec the tests, then write the nonce-signed outcome."""
    # Captured before any sample code runs: the sample may patch os, json or builtins.
    write, dumps, exit_now = os.write, json.dumps, os._exit
    pristine_builtins = dict(builtins.__dict__)
    token = nonce.decode()
    nonce[:] = b"\0" * len(nonce)
    scope: dict = {"__name__": "__main__", "__builtins__": builtins}
    outcome: dict
    try:
        exec(compile(solution, "<solution>", "exec"), scope)
        # A solution that patched builtins (abs, isinstance, AssertionError...) must not bend the tests.
        builtins.__dict__.clear()
        builtins.__dict__.update(pristine_builtins)
        scope["__builtins__"] = builtins
        exec(compile(tests, "<tests>", "exec"), scope)
        outcome = {"verdict": "passed"}
    except BaseException as exc:  # noqa: BLE001 - every way a sample can end is a verdict
        try:
            message = str(exc)[:500]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            message = ""
        outcome = {"verdict": _verdict_for(exc), "type": type(exc).__name__, "message": message}
    outcome["nonce"] = token
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the sample may have closed or replaced them
        pass
    write(result_fd, (dumps(outcome) + "\n").encode())
    exit_now(0)
