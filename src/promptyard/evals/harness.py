"""Runs one sample's program inside the sandboxed child and reports how it ended, with proof it finished.

The proof is a per-sample random nonce the worker checks: it is written only after the last test statement,
so an early exit (sys.exit, os._exit, a killed parent) or a report forged from a guess never counts as passed.
Limit: the nonce lives in this process, so code that deliberately walks the interpreter's frames or heap could
find it; the sandbox contains such code, but the verdict is then only as honest as the sample.

The report is one tab-separated line, `nonce  verdict  exception-type  message`, the last two escaped with
`unicode_escape` (no json here: this module runs in every forked child, where each module touched costs
copy-on-write page faults).
"""

from __future__ import annotations

import builtins
import os
import sys

# Exceptions reported as their own verdicts; everything else is `error` with its type.
_VERDICT_BY_EXCEPTION = {AssertionError: "failed", MemoryError: "memory"}

# The builtins as the interpreter made them, copied once in the worker before any sample ran: the tests run
# with this copy as their `__builtins__`, so a solution that patched builtins (abs, isinstance, len...) cannot
# bend them. Copying it once here instead of in every child saves touching ~160 objects per sample.
PRISTINE_BUILTINS = dict(builtins.__dict__)
# This module's own code would look builtins up in the live module, which the solution may have patched by the
# time the tests run (a no-op `exec` would "pass" them): it uses these, bound before any sample code ran.
_compile, _exec, _isinstance, _str, _type = compile, exec, isinstance, str, type


def _verdict_for(exc: BaseException) -> str:
    for kind, verdict in _VERDICT_BY_EXCEPTION.items():
        if _isinstance(exc, kind):
            return verdict
    return "error"


def _code(source, filename: str):
    """`source` as a code object: compiled here unless the worker already did."""
    return _compile(source, filename, "exec", dont_inherit=True) if _isinstance(source, _str) else source


def _escape(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def run_program(solution, tests, result_fd: int, nonce: bytearray) -> None:
    """Exec the solution, then the tests (each text or code) against pristine builtins; write the signed outcome."""
    # Captured before any sample code runs: the sample may patch os or builtins.
    write, exit_now = os.write, os._exit
    token = nonce.decode()
    nonce[:] = b"\0" * len(nonce)
    scope: dict = {"__name__": "__main__", "__builtins__": builtins}
    try:
        _exec(_code(solution, "<solution>"), scope)
        scope["__builtins__"] = PRISTINE_BUILTINS
        _exec(_code(tests, "<tests>"), scope)
        report = f"{token}\tpassed\n"
    except BaseException as exc:  # noqa: BLE001 - every way a sample can end is a verdict
        try:
            message = _str(exc)[:500]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            message = ""
        report = f"{token}\t{_verdict_for(exc)}\t{_escape(_type(exc).__name__)}\t{_escape(message)}\n"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the sample may have closed or replaced them
        pass
    write(result_fd, report.encode())
    exit_now(0)
