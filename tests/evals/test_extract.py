"""Code extraction from real-looking model outputs, in completion and chat mode."""

from __future__ import annotations

import pytest

from promptyard.evals.extract import code_blocks, extract, parses, truncate_completion

PROMPT = 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n'


def test_completion_mode_stops_at_the_next_top_level_statement():
    text = "    return a + b\n\n\ndef test():\n    assert add(1, 2) == 3\n\nprint(add(1, 2))\n"
    assert truncate_completion(text) == "    return a + b\n\n"
    assert extract("    return a + b\nif __name__ == '__main__':\n    main()", "completion") == "    return a + b"
    assert extract("    return a + b\n# tests\nassert add(1, 1) == 2", "completion") == "    return a + b"
    # Nested code (indented `if`, inner `def`) is not a stop.
    body = "    if a:\n        return a\n    def inner():\n        return b\n    return inner()\n"
    assert truncate_completion(body) == body


def test_chat_picks_the_block_that_defines_the_entry_point():
    text = (
        "Here is an example of usage:\n```python\nprint(add(1, 2))\n```\n"
        "And the solution:\n```python\nimport math\n\ndef add(a, b):\n    return a + b\n```\nHope it helps!"
    )
    code = extract(text, "chat", entry_point="add")
    assert code.startswith("import math\n\ndef add(a, b):")
    assert "print(" not in code


def test_chat_keeps_imports_from_another_block():
    text = "```python\nimport re\nfrom collections import Counter\n```\n\n```python\ndef add(a, b):\n    return a + b\n```"
    code = extract(text, "chat", entry_point="add")
    assert code.splitlines()[:2] == ["import re", "from collections import Counter"]
    assert parses(code)


def test_chat_without_fences_takes_the_longest_valid_python():
    text = (
        "Sure! The function below adds numbers.\n\ndef add(a, b):\n    # simple\n    return a + b\n\n"
        "This runs in O(1) time, which is optimal."
    )
    code = extract(text, "chat", entry_point="add")
    assert code == "def add(a, b):\n    # simple\n    return a + b\n"


def test_chat_function_redefined_with_another_signature_takes_the_last_definition():
    text = (
        "First attempt:\n```python\ndef add(a):\n    return a\n```\nOops, fixed:\n"
        "```python\ndef add(a: int, b: int = 0) -> int:\n    return a + b\n```"
    )
    assert "b: int = 0" in extract(text, "chat", entry_point="add")


def test_chat_unterminated_fence_runs_to_the_end():
    text = "Answer:\n```python\ndef add(a, b):\n    return a + b\n"
    assert code_blocks(text) == [("python", "def add(a, b):\n    return a + b\n")]
    assert extract(text, "chat", entry_point="add") == "def add(a, b):\n    return a + b\n"


def test_chat_drops_an_echoed_prompt_and_ignores_other_languages():
    text = "```bash\npip install nothing\n```\n```python\n" + PROMPT + "    return a + b\n```"
    code = extract(text, "chat", entry_point="add", prompt=PROMPT)
    assert code == "    return a + b\n"
    # Prepending the prompt, as HumanEval assembly does, gives back a working program.
    namespace: dict = {}
    exec(PROMPT + code, namespace)
    assert namespace["add"](2, 3) == 5


def test_unknown_mode():
    with pytest.raises(ValueError):
        extract("x", "diff")
