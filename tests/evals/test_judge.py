"""The judge process: honest programs behave as in one process, and what crosses the pipe is plain data."""

from __future__ import annotations

import pytest

from promptyard.evals import bridge
from promptyard.evals.sandbox import Program


def run(box, solution: str, tests: str):
    return box.run(Program(solution, tests))


HONEST = {
    "exception type and message": (
        "def f(x):\n    raise ValueError(f'bad {x}')\n",
        "try:\n    f(3)\n    assert False\nexcept ValueError as exc:\n    assert str(exc) == 'bad 3'\n"),
    "a subclass arrives as its builtin ancestor": (
        "class Oops(KeyError):\n    pass\ndef f():\n    raise Oops('k')\n",
        "try:\n    f()\nexcept LookupError:\n    pass\nelse:\n    assert False\n"),
    "state persists between calls": (
        "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls)\n",
        "assert [f(1), f(2), f(3)] == [1, 2, 3]\n"),
    "arguments changed in place": (
        "def f(items, table):\n    items.sort()\n    table['seen'] = True\n",
        "a, t = [3, 1, 2], {}\nf(a, t)\nassert a == [1, 2, 3] and t == {'seen': True}\n"),
    "instances of the solution's classes go back and forth": (
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "def total(pairs):\n    return sum(p.a + p.b for p in pairs)\n",
        "ps = [Pair(1, 2), Pair(3, 4)]\nassert total(ps) == 10 and ps[0].a == 1\n"),
    "collections cross as their own types": (
        "from collections import Counter, deque, OrderedDict, defaultdict\n"
        "def f():\n    d = defaultdict(list)\n    d['a'].append(1)\n"
        "    return Counter('aab'), deque([1, 2], 3), OrderedDict(x=1), d\n",
        "c, q, o, d = f()\nassert c == {'a': 2, 'b': 1} and c['z'] == 0 and list(q) == [1, 2] and q.maxlen == 3\n"
        "assert o == {'x': 1} and d['b'] == [] and type(c).__name__ == 'Counter'\n"),
    "a match object is truthy and readable": (
        "import re\ndef f(s):\n    return re.search('a(b)', s)\n",
        "assert f('xab') and f('xab').group(1) == 'b' and not f('zz')\n"),
    "exact types and values": (
        "def f():\n    return [True, 1, 1.5, -0.0, 2**80, 1j, 'é\\ud800', b'\\x00', (1,), {1: {2}}, frozenset([3]), None]\n",
        "r = f()\nassert r == [True, 1, 1.5, -0.0, 2**80, 1j, 'é\\ud800', b'\\x00', (1,), {1: {2}}, frozenset([3]), None]\n"
        "assert [type(v).__name__ for v in r] == ['bool', 'int', 'float', 'float', 'int', 'complex', 'str', "
        "'bytes', 'tuple', 'dict', 'frozenset', 'NoneType']\n"),
    "stdlib modules the solution imported are the tests' too": (
        "import math\ndef f(x):\n    return math.sqrt(x)\n",
        "assert math.isclose(f(2.0), 1.4142135, rel_tol=1e-6)\n"),
}


@pytest.mark.parametrize("case", HONEST.values(), ids=HONEST.keys())
def test_honest_programs_pass_as_in_one_process(sandbox, case):
    result = run(sandbox, *case)
    assert result.verdict == "passed", result.detail


def test_a_solution_gone_mid_call_never_passes_even_if_the_tests_catch_everything(sandbox):
    tests = "try:\n    f(1)\nexcept BaseException:\n    pass\ntry:\n    f(2)\nexcept BaseException:\n    pass\n"
    result = run(sandbox, "import os\ndef f(x):\n    os._exit(0)\n", tests)
    assert result.verdict == "crashed" and result.detail.startswith("exited with status 0")


def test_garbage_left_on_the_pipe_does_not_reach_the_next_sample(sandbox):
    garbage = "import os\nos.write(4, b'\\x05\\x00\\x00\\x00V' + b'T' * 4096)\nos._exit(0)\n"
    for _ in range(len(sandbox._all) * 2):
        assert run(sandbox, garbage, "assert True\n").verdict != "passed"
    for _ in range(len(sandbox._all) * 2):
        result = run(sandbox, "def f():\n    return 2\n", "assert f() == 2\n")
        assert result.verdict == "passed", result.detail


def test_a_function_returning_a_subclass_of_a_plain_type_is_an_error(sandbox):
    result = run(sandbox, "class S(str):\n    pass\ndef f():\n    return [S('x')]\n", "assert f() == ['x']\n")
    assert (result.verdict, result.exception) == ("error", "TypeError")
    assert "'S'" in result.detail


def test_tests_cannot_pass_functions_to_the_solution(sandbox):
    result = run(sandbox, "def f(g):\n    return g(1)\n", "assert f(lambda x: x) == 1\n")
    assert (result.verdict, result.exception) == ("error", "TypeError")


@pytest.mark.parametrize("frame", [b"", b"\xff", b"s\xff\xff\xff\xff", b"l\x05\x00\x00\x00N", b"S\x01\x00\x00\x00l\x00\x00\x00\x00",
                                   b"D\x0b\x00\x00\x00__import__\x00\x00\x00\x00", b"Q" + b"N" + b"i" + b"\x00" * 8])
def test_the_decoder_refuses_what_is_not_plain_data(frame):
    with pytest.raises(Exception):  # noqa: B017 - any refusal; what matters is that nothing else comes out
        bridge.decode(frame)
