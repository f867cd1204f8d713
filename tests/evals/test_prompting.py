"""What models are shown for HumanEval and MBPP tasks, and the code taken from their answers."""

from __future__ import annotations

import pytest

from promptyard.evals.datasets import load_humaneval, load_mbpp
from promptyard.evals.prompting import code_to_run, completion_prompt, model_input, template_variables

HUMANEVAL_0 = load_humaneval().tasks["HumanEval/0"]


@pytest.fixture(scope="module")
def mbpp_2(mbpp_path):
    return load_mbpp(mbpp_path).get(2)


def test_mbpp_chat_input_is_the_standard_prompt_with_every_test(mbpp_2):
    [message] = model_input(mbpp_2, "chat")
    assert message["role"] == "user"
    assert message["content"] == (
        "You are an expert Python programmer, and here is your task: Write a function to find the shared elements "
        "from the given two lists. Your code should pass these tests:\n\n"
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
        "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))\n"
        "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))\n\n"
        "Answer with the code in a ```python block."
    )


def test_mbpp_completion_input_is_a_docstring_with_the_statement_and_first_test(mbpp_2):
    assert model_input(mbpp_2, "completion") == (
        '"""\nWrite a function to find the shared elements from the given two lists.\n'
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
        '"""\n'
    )


def test_humaneval_inputs_are_the_prompt_to_continue_or_a_request_for_the_function():
    assert model_input(HUMANEVAL_0, "completion") == HUMANEVAL_0.prompt
    [message] = model_input(HUMANEVAL_0, "chat")
    assert message["content"].endswith(f"```python\n{HUMANEVAL_0.prompt}```")


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
