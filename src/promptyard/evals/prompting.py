"""What a model is shown for a task in an evaluation run, and how its answer becomes the code the sandbox runs.

HumanEval-style tasks are code to continue: a completion model continues the prompt, a chat model is asked for the
whole function, and the prompt goes in front of the answer when it runs. MBPP-style tasks are a statement in words
with assert tests: the model writes the whole code, so it is shown the tests (they name the function and show how
it is called), and its code runs as it is, followed by the tests.
"""

from __future__ import annotations

import re

from promptyard.evals.datasets import Task
from promptyard.evals.extract import extract, extract_chat, truncate_completion

HUMANEVAL_CHAT = "Complete the following Python function. Answer with the whole function in a ```python block."
# The prompt of the MBPP paper (Austin et al., 2021), as evaluation harnesses ask instruction-tuned models.
MBPP_CHAT = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n"
    "{tests}\n\nAnswer with the code in a ```python block."
)
# A completion model is given what bigcode-evaluation-harness gives it: the statement and the first test as a
# docstring, to be followed by the code. It writes whole code, helpers included, so a `def` must not stop it.
MBPP_STOPS = ("\nclass ", "\nassert ", '\n"""', "\nprint(", "\nif ", "\n```")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def completion_prompt(task: Task) -> str:
    """The text a completion model continues."""
    if task.style == "humaneval":
        return task.prompt
    return f'"""\n{task.text}\n{task.test_list[0]}\n"""\n'


def model_input(task: Task, mode: str) -> str | list[dict]:
    """Without a library prompt: the text to continue, or in chat mode one user message asking for the code."""
    if mode == "completion":
        return completion_prompt(task)
    if task.style == "humaneval":
        return [{"role": "user", "content": f"{HUMANEVAL_CHAT}\n\n```python\n{task.prompt}```"}]
    return [{"role": "user", "content": MBPP_CHAT.format(text=task.text, tests="\n".join(task.test_list))}]


def template_variables(task: Task) -> dict:
    """What a library prompt may read: `prompt` (what a completion model continues), `task_id`, `entry_point`;
    for MBPP-style tasks also `text` (the statement) and `tests` (the assert lines, a list)."""
    offered: dict = {"prompt": completion_prompt(task), "task_id": task.task_id, "entry_point": task.entry_point}
    if task.style == "mbpp":
        offered.update(text=task.text, tests=list(task.test_list))
    return offered


def code_to_run(task: Task, raw: str, mode: str) -> str:
    """The sample's completion: the part of the model's answer that `task.program` runs."""
    if task.style == "humaneval":
        return extract(raw, mode, entry_point=task.entry_point, prompt=task.prompt)
    if mode == "chat":
        return extract_chat(raw, task.entry_point)
    # Completion models often open with a blank line; the code starts after it.
    return truncate_completion(_LEADING_BLANK_LINES.sub("", raw), MBPP_STOPS)
