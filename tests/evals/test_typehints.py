"""The typing annotations the forker makes ahead of the solutions (evals/typehints.py)."""

from __future__ import annotations

import typing

from promptyard.evals import typehints

TYPED = ("from typing import Dict, List, Optional, Tuple\n"
         "def f(a: List[int], b: Dict[str, List[Tuple[int, int]]]) -> Optional[str]:\n"
         "    return a[0:2]\n"
         "def g(c: typing.Callable[[int], str]) -> typing.Union[int, None]:\n"
         "    return None\n")


def test_the_annotations_of_a_typed_solution_are_found():
    assert typehints.find(TYPED) == ("List[int]", "Dict[str, List[Tuple[int, int]]]", "Optional[str]",
                                     "typing.Callable[[int], str]", "typing.Union[int, None]")
    assert typehints.find("def f(x):\n    return x[1:2]\n") == ()


def test_made_annotations_are_typings_own_cached_objects():
    made: set[str] = set()
    typehints.warm(typehints.find(TYPED), made)
    assert "Dict[str, List[Tuple[int, int]]]" in made
    # What the solution's definition then evaluates is found in typing's cache: the very same object.
    assert typehints.build("Dict[str, List[Tuple[int, int]]]") is typing.Dict[str, typing.List[typing.Tuple[int, int]]]


def test_nothing_but_typing_and_builtin_type_names_is_ever_evaluated(tmp_path):
    canary = tmp_path / "ran"
    hostile = [
        f"List[__import__('os').system('touch {canary}')]",
        "List[os]", "List[eval]", "List[open]", "List[int.__subclasses__]", "List[().__class__]",
        "List[int] + List[str]", "List[" * 50 + "int" + "]" * 50, "Optional[str]]", "Dict[str,,int]",
    ]
    made: set[str] = set()
    typehints.warm(hostile, made)  # each is skipped (does not parse, or names something else): no error
    assert not canary.exists()
    for text in hostile:
        try:
            typehints.build(text)
        except (LookupError, TypeError, ValueError):
            continue
        raise AssertionError(f"{text!r} was built")
