"""Training fixtures: a tiny GPT-2 that LoRA can teach in a few steps, and a small custom code dataset."""

from __future__ import annotations

import json

import pytest

from promptyard.db import db
from promptyard.execution.feedback import add_feedback
from promptyard.execution.pipeline import ExecutionRequest, execute
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin, prompt_text

# Tasks whose reference solutions the tiny base model does not write (it was never trained on anything).
TASKS = [
    ("tiny/add", "def add(a, b):\n", "    return a + b\n", "assert candidate(2, 3) == 5"),
    ("tiny/is_even", "def is_even(n):\n", "    return n % 2 == 0\n", "assert candidate(4) and not candidate(3)"),
    ("tiny/sub", "def sub(a, b):\n", "    return a - b\n", "assert candidate(5, 3) == 2"),
    ("tiny/double", "def double(x):\n", "    return x * 2\n", "assert candidate(4) == 8"),
]


def tasks_jsonl() -> str:
    lines = []
    for task_id, prompt, solution, check in TASKS:
        entry = prompt.split("(")[0].removeprefix("def ")
        lines.append(json.dumps({"task_id": task_id, "prompt": prompt, "canonical_solution": solution,
                                 "entry_point": entry, "tests": f"def check(candidate):\n    {check}\n"}))
    return "\n".join(lines) + "\n"


@pytest.fixture
def tiny_dataset(app):
    """The TASKS registered as the custom evaluation dataset `tiny-code`."""
    from promptyard.evals.datasets import register_custom_text

    register_custom_text(app.config["PROMPTYARD_HOME"], "tiny-code", tasks_jsonl())
    return "tiny-code"


@pytest.fixture(scope="session")
def trainable_gpt2_dir(tmp_path_factory):
    """A tiny GPT-2 that LoRA can teach in a few dozen steps (see build_trainable_gpt2)."""
    from tests.conftest import single_torch_thread
    from tests.fixtures.tiny_models import build_tiny_gpt2, build_trainable_gpt2

    single_torch_thread()
    tokenizer_dir = build_tiny_gpt2(tmp_path_factory.mktemp("tokenizer-source"))
    return build_trainable_gpt2(tmp_path_factory.mktemp("trainable-gpt2"), tokenizer_dir)


def scripted_model(answers: dict[str, list[str]]):
    """A FunctionPlugin answering each prompt with its scripted answers in turn (the model at the boundary)."""
    calls: dict[str, int] = {}

    def answer(prompt, params) -> str:
        text = prompt_text(prompt)
        index = calls.get(text, 0)
        calls[text] = index + 1
        options = answers[text]
        return options[index % len(options)]

    return FunctionPlugin(answer)


def record(model: str, text, rating: int | None, **request) -> int:
    """One execution of `text` (or of a library prompt named in `request`) through the real pipeline, uncached,
    rated when `rating` is given; returns its id."""
    row = execute(ExecutionRequest(model=model, input=text, cache=False, **request))
    if rating is not None:
        add_feedback(row.id, rating)
    db.session.expire_all()
    return row.id


@pytest.fixture
def scripted(app):
    """Install a scripted model under `name`."""

    def install(name: str, answers: dict[str, list[str]]) -> str:
        install_plugin(name, scripted_model(answers))
        return name

    return install
