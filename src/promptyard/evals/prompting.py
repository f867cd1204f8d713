"""What a model is shown for a task in an evaluation run, and how its answer becomes the code the sandbox runs.

HumanEval-style tasks are code to continue: a completion model continues the prompt, a chat model is asked for the
whole function, and the prompt goes in front of the answer when it runs. MBPP-style tasks are a statement in words
with assert tests: the model writes the whole code, and its code runs as it is, followed by the tests.

Chat models are asked the way EvalPlus asks them (the harness behind the published HumanEval and MBPP figures of
instruction-tuned models, e.g. the Qwen2.5-Coder report): its instruction, the task in a fence (the completion
prompt: HumanEval's prompt, or MBPP's statement and first test as a docstring), and the assistant's answer begun with
its response prefix and an open ```python fence, which the model continues (a prefill). Greedy, 768 new tokens at
most, ending at the fence that closes the code or where top-level test code starts.
"""

from __future__ import annotations

import re

from promptyard.evals.datasets import Task
from promptyard.evals.extract import extract_prefilled, keep_definitions, truncate_completion

# EvalPlus's instruction and response prefix for chat models (evalplus/codegen.py, make_raw_chat_prompt).
EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a "
                        "markdown code block:")
EVALPLUS_RESPONSE = ("Below is a Python script with a self-contained function that solves the problem and passes "
                     "corresponding tests:")
OPEN_FENCE = "```python\n"
# Where EvalPlus ends a chat model's answer: the fence closing its code, and the starts of top-level test code.
CHAT_STOPS = ("\n```\n", "\nif __name__", "\ndef main(", "\nprint(")
# EvalPlus's max_new_tokens: room for whole functions with their helpers.
EVAL_MAX_NEW_TOKENS = 768
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
    """Without a library prompt: the text to continue, or in chat mode EvalPlus's request and begun answer."""
    if mode == "completion":
        return completion_prompt(task)
    return [
        {"role": "user", "content": f"{EVALPLUS_INSTRUCTION}\n```\n{completion_prompt(task).strip()}\n```\n"},
        {"role": "assistant", "content": f"{EVALPLUS_RESPONSE}\n{OPEN_FENCE}"},
    ]


def run_params(mode: str, n: int, params: dict | None) -> dict:
    """The generation params a run records: its own, over EvalPlus's in chat mode (768 new tokens, its stops, and
    greedy when there is one sample per task)."""
    if mode != "chat":
        return dict(params or {})
    protocol: dict = {"max_new_tokens": EVAL_MAX_NEW_TOKENS, "stop": list(CHAT_STOPS)}
    if n == 1:
        protocol["do_sample"] = False
    return {**protocol, **(params or {})}


def template_variables(task: Task) -> dict:
    """What a library prompt may read: `prompt` (what a completion model continues), `task_id`, `entry_point`;
    for MBPP-style tasks also `text` (the statement) and `tests` (the assert lines, a list)."""
    offered: dict = {"prompt": completion_prompt(task), "task_id": task.task_id, "entry_point": task.entry_point}
    if task.style == "mbpp":
        offered.update(text=task.text, tests=list(task.test_list))
    return offered


def code_to_run(task: Task, raw: str, mode: str) -> str:
    """The sample's completion: the part of the model's answer that `task.program` runs."""
    if mode == "chat":
        # EvalPlus turns tabs into four spaces, then keeps the definitions (a model's own top-level tests go).
        code = extract_prefilled(raw.replace("\t", "    "), task.entry_point,
                                 task.prompt if task.style == "humaneval" else None)
        return keep_definitions(code)
    if task.style == "humaneval":
        return truncate_completion(raw)
    # Completion models often open with a blank line; the code starts after it.
    return truncate_completion(_LEADING_BLANK_LINES.sub("", raw), MBPP_STOPS)
