"""The typing annotations a solution's definitions will evaluate (`List[int]`, `Dict[str, Tuple[int, int]]`), made
once in the forker so that every solution process finds them in typing's cache.

Code models write type hints; a definition evaluates its annotations when it runs, and `List[int]` made for the
first time runs a good deal of typing's Python code. In a solution process that code writes to pages shared with
the forker (a copy-on-write fault each: ~55 faults, ~0.3 ms a sample); made in the forker first, it is one lookup in
typing's cache. Nothing of the solution runs in the forker: the worker finds candidate expressions in the source
with a regular expression, and the forker builds each with a parser that accepts only names of `typing` and of
builtin types, brackets and commas. Anything else is skipped.
"""

from __future__ import annotations

import builtins
import re
import typing

# At most this many expressions a job, and this long each; the forker remembers this many it has made.
PER_JOB = 8
LONGEST = 120
REMEMBERED = 512
MAX_DEPTH = 6

_GENERICS = ("List", "Dict", "Set", "FrozenSet", "Tuple", "Optional", "Union", "Iterable", "Iterator", "Sequence",
             "Mapping", "MutableMapping", "Callable", "Type", "Deque", "DefaultDict", "Counter", "Generator")
_CANDIDATE = re.compile(r"\b(?:typing\.)?(?:%s)\[[\w\[\], .]*\]" % "|".join(_GENERICS))
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][\w.]*)|([\[\],]))")
_NAMES: dict[str, object] = {name: getattr(typing, name) for name in typing.__all__ if hasattr(typing, name)}
_NAMES.update({name: getattr(builtins, name) for name in ("int", "float", "str", "bool", "bytes", "complex", "object",
                                                          "list", "dict", "tuple", "set", "frozenset", "type")})
_NAMES["None"] = None


def find(source: str) -> tuple[str, ...]:
    """Expressions in the source that look like typing annotations (unique, at most PER_JOB)."""
    if "[" not in source:
        return ()
    found: list[str] = []
    for match in _CANDIDATE.finditer(source):
        text = match.group(0)
        if len(text) <= LONGEST and text not in found:
            found.append(text)
            if len(found) == PER_JOB:
                break
    return tuple(found)


def warm(expressions, made: set) -> None:
    """Build each expression not in `made` (and remember it there); one that does not parse is skipped."""
    for text in expressions:
        if type(text) is not str or text in made:
            continue
        if len(made) >= REMEMBERED:
            made.clear()
        made.add(text)
        try:
            build(text)
        except Exception:  # noqa: BLE001 - not an annotation typing accepts (TypeError, most often): nothing made
            continue


def build(text: str):
    """The annotation `text` names, built from typing's and the builtin types' names only; ValueError or LookupError
    for anything else."""
    tokens = _tokens(text)
    if tokens is None:
        raise ValueError("not an annotation")
    value, rest = _expression(tokens, 0)
    if rest:
        raise ValueError("trailing text")
    return value


def _tokens(text: str) -> list[str] | None:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            return None
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


def _expression(tokens: list[str], depth: int):
    """(value, remaining tokens) of NAME or NAME[expr, ...]; names only from typing and the builtin types."""
    if depth > MAX_DEPTH or not tokens:
        raise ValueError("too deep")
    name = tokens[0]
    value = _NAMES[name[7:] if name.startswith("typing.") else name]
    rest = tokens[1:]
    if not rest or rest[0] != "[":
        return value, rest
    arguments = []
    rest = rest[1:]
    while True:
        if rest and rest[0] == "[":  # a list of types, as in Callable[[int], str]
            inner, rest = _list(rest[1:], depth + 1)
            arguments.append(inner)
        else:
            argument, rest = _expression(rest, depth + 1)
            arguments.append(argument)
        if not rest:
            raise ValueError("unclosed")
        if rest[0] == "]":
            break
        if rest[0] != ",":
            raise ValueError("expected a comma")
        rest = rest[1:]
    value = value[tuple(arguments) if len(arguments) > 1 else arguments[0]]
    return value, rest[1:]


def _list(tokens: list[str], depth: int):
    items = []
    while tokens and tokens[0] != "]":
        item, tokens = _expression(tokens, depth)
        items.append(item)
        if tokens and tokens[0] == ",":
            tokens = tokens[1:]
    if not tokens:
        raise ValueError("unclosed")
    return items, tokens[1:]
