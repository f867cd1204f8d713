"""What models are shown for HumanEval and MBPP tasks, and the code taken from their answers."""

from __future__ import annotations

import pytest

from promptyard.evals.datasets import load_humaneval, load_mbpp
from promptyard.evals.prompting import (
    EVALPLUS_INSTRUCTION,
    EVALPLUS_RESPONSE,
    code_to_run,
    completion_prompt,
    model_input,
    run_params,
    template_variables,
)

HUMANEVAL_0 = load_humaneval().tasks["HumanEval/0"]


@pytest.fixture(scope="module")
def mbpp_2(mbpp_path):
    return load_mbpp(mbpp_path).get(2)


def test_mbpp_chat_input_is_evalplus_request_and_begun_answer(mbpp_2):
    user, assistant = model_input(mbpp_2, "chat")
    assert user == {"role": "user", "content": (
        "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n"
        '```\n"""\nWrite a function to find the shared elements from the given two lists.\n'
        'assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"""\n```\n'
    )}
    assert assistant == {"role": "assistant", "content": (
        "Below is a Python script with a self-contained function that solves the problem and passes corresponding "
        "tests:\n```python\n"
    )}


def test_mbpp_completion_input_is_a_docstring_with_the_statement_and_first_test(mbpp_2):
    assert model_input(mbpp_2, "completion") == (
        '"""\nWrite a function to find the shared elements from the given two lists.\n'
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
        '"""\n'
    )


def test_humaneval_inputs_are_the_prompt_to_continue_or_evalplus_request():
    assert model_input(HUMANEVAL_0, "completion") == HUMANEVAL_0.prompt
    user, assistant = model_input(HUMANEVAL_0, "chat")
    assert user["content"] == (f"{EVALPLUS_INSTRUCTION}\n```\n{HUMANEVAL_0.prompt.strip()}\n```\n")
    assert assistant["content"] == f"{EVALPLUS_RESPONSE}\n```python\n"


def test_chat_runs_get_evalplus_params_under_their_own():
    assert run_params("chat", 1, None) == {"max_new_tokens": 768, "do_sample": False,
                                           "stop": ["\n```\n", "\nif __name__", "\ndef main(", "\nprint("]}
    assert run_params("chat", 1, {"max_new_tokens": 512})["max_new_tokens"] == 512
    assert "do_sample" not in run_params("chat", 10, None)  # n samples must differ: greedy is not imposed
    assert run_params("completion", 1, None) == {}
    assert run_params("completion", 1, {"seed": 3}) == {"seed": 3}


def test_a_continued_answer_is_the_code_inside_the_begun_fence():
    # The model continued "```python\n" and stopped at the closing fence (a stop sequence, so not in the output).
    raw = "from typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n" \
          "\treturn any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])"
    code = code_to_run(HUMANEVAL_0, raw, "chat")
    assert code.startswith("from typing import List\n\ndef has_close_elements(")
    assert "\n    return any(" in code  # EvalPlus's tab to four spaces


def test_a_continued_answer_loses_its_own_top_level_tests():
    raw = ("def has_close_elements(numbers, threshold):\n    return False\n\n"
           "assert has_close_elements([1.0], 0.5) is True\nhas_close_elements([], 1.0)\nLIMIT = 3\n")
    assert code_to_run(HUMANEVAL_0, raw, "chat") == (
        "def has_close_elements(numbers, threshold):\n    return False\n\nLIMIT = 3\n")


def test_an_answer_that_ignored_the_begun_fence_is_read_from_its_own_fences():
    raw = "Sure, here it is:\n```python\ndef has_close_elements(numbers, threshold):\n    return True\n```\nDone."
    assert code_to_run(HUMANEVAL_0, raw, "chat") == "def has_close_elements(numbers, threshold):\n    return True\n"


def test_template_variables_for_each_style(mbpp_2):
    assert template_variables(HUMANEVAL_0) == {
        "prompt": HUMANEVAL_0.prompt, "task_id": "HumanEval/0", "entry_point": "has_close_elements",
    }
    offered = template_variables(mbpp_2)
    assert offered["prompt"] == completion_prompt(mbpp_2)
    assert offered["text"] == mbpp_2.text and offered["tests"] == mbpp_2.test_list
    assert offered["entry_point"] == "similar_elements"


def test_mbpp_completion_keeps_whole_code_from_a_leading_newline_to_the_first_test(mbpp_2):
    # A completion model opens with a blank line, writes a helper and the function, then starts testing it.
    raw = (
        "\n\ndef _both(a, b):\n    return set(a) & set(b)\n\n"
        "def similar_elements(a, b):\n    return tuple(_both(a, b))\n\n"
        "assert similar_elements((1,), (1,)) == (1,)\nprint('ok')\n"
    )
    assert code_to_run(mbpp_2, raw, "completion") == (
        "def _both(a, b):\n    return set(a) & set(b)\n\ndef similar_elements(a, b):\n    return tuple(_both(a, b))\n"
    )


@pytest.mark.parametrize("tail", ['\n"""\nWrite a function', "\nif __name__ == '__main__':\n    main()",
                                  "\nclass Test:\n    pass", "\n```\nDone."])
def test_mbpp_completion_stops(mbpp_2, tail):
    code = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    assert code_to_run(mbpp_2, code + tail, "completion") == code


def test_mbpp_chat_answer_keeps_the_code_block_only(mbpp_2):
    raw = (
        "Sure! Here is the function:\n\n```python\nimport itertools\n\ndef similar_elements(a, b):\n"
        "    return tuple(set(a) & set(b))\n```\n\nExample:\n```python\nprint(similar_elements((1, 2), (2,)))\n```\n"
    )
    assert code_to_run(mbpp_2, raw, "chat") == (
        "import itertools\n\ndef similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    )


def test_humaneval_answers_are_cut_as_before():
    assert code_to_run(HUMANEVAL_0, "    return False\n\ndef other():\n    pass\n", "completion") == "    return False\n"
    raw = f"Here:\n```python\n{HUMANEVAL_0.prompt}    return False\n```"
    assert code_to_run(HUMANEVAL_0, raw, "chat") == "    return False\n"
