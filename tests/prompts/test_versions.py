"""Versions: immutable, gapless under concurrency, deduplicated, diffed."""

from __future__ import annotations

import threading

import pytest

from promptyard.errors import NotFound, Unprocessable
from promptyard.prompts import library
from promptyard.prompts.templates import TemplateError
from promptyard.prompts.versions import add_version, diff_versions, list_versions


def test_versions_number_up_and_identical_content_is_reused(app):
    prompt, _ = library.create_prompt("p", "A {{ x }}")
    created_at = prompt.updated_at
    row, created = add_version("p", "B {{ x }}", message="second")
    assert (row.number, created) == (2, True)
    assert library.get_prompt("p").updated_at > created_at
    again, created = add_version("p", "B {{ x }}", message="other message")
    assert (again.number, created) == (2, False)
    changed, created = add_version("p", "B {{ x }}", params={"temperature": 0})
    assert (changed.number, created) == (3, True)
    rows, total = list_versions("p")
    assert [r.number for r in rows] == [3, 2, 1] and total == 3


def test_bad_versions_are_refused(app):
    library.create_prompt("p", "A {{ x }}")
    with pytest.raises(TemplateError):
        add_version("p", "{{ y }}", variables=[{"name": "x"}])
    with pytest.raises(Unprocessable):
        add_version("p", "A", params=["not", "a", "dict"])
    with pytest.raises(NotFound):
        add_version("nope", "A")
    assert list_versions("p")[1] == 1


def test_diff_covers_template_variables_and_params(app):
    library.create_prompt("p", "line one\nline {{ x }}\n", params={"temperature": 0.2})
    add_version("p", "line one\nline {{ x }} changed\n", variables=[{"name": "x", "type": "integer"}], params={"temperature": 0.5})
    text = diff_versions("p", 1, 2)["diff"]
    assert "--- p@v1/template" in text and "+++ p@v2/template" in text
    assert "+line {{ x }} changed" in text
    assert '+    "type": "integer"' in text
    assert '-  "temperature": 0.2' in text and '+  "temperature": 0.5' in text
    assert diff_versions("p")["from"] == 1
    assert diff_versions("p", 2, 2)["diff"] == ""
    with pytest.raises(NotFound):
        diff_versions("p", 1, 7)


def test_concurrent_writers_get_distinct_gapless_numbers(app):
    library.create_prompt("busy", "v0 {{ x }}")
    numbers, errors = [], []

    def writer(i: int) -> None:
        with app.app_context():
            try:
                numbers.append(add_version("busy", f"v{i + 1} {{{{ x }}}}")[0].number)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == list(range(2, 10))
    rows, _ = list_versions("busy")
    assert sorted(r.number for r in rows) == list(range(1, 10))
