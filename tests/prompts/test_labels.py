"""Labels move with history kept and roll back to their previous target."""

from __future__ import annotations

import pytest

from promptyard.errors import Conflict, NotFound, Unprocessable
from promptyard.prompts import library
from promptyard.prompts.labels import get_label_dict, label_to_dict, rollback_label, set_label
from promptyard.prompts.versions import add_version


@pytest.fixture
def three_versions(app):
    library.create_prompt("p", "one {{ x }}")
    add_version("p", "two {{ x }}")
    add_version("p", "three {{ x }}")


def test_set_move_and_rollback_walk_back_through_history(three_versions):
    set_label("p", "production", 1, actor="a")
    set_label("p", "production", 2)
    set_label("p", "production", 3)
    assert set_label("p", "production", 3).version.number == 3  # no-op move records nothing
    assert rollback_label("p", "production").version.number == 2
    assert rollback_label("p", "production").version.number == 1
    with pytest.raises(Conflict) as info:
        rollback_label("p", "production")
    assert info.value.code == "no_previous_target"
    data = get_label_dict("p", "production")
    assert data["version"] == 1
    assert [(h["from"], h["to"], h["action"]) for h in data["history"]] == [
        (None, 1, "set"), (1, 2, "set"), (2, 3, "set"), (3, 2, "rollback"), (2, 1, "rollback"),
    ]
    assert data["history"][0]["actor"] == "a"
    assert library.prompt_to_dict(library.get_prompt("p"))["labels"] == {"production": 1}


def test_resolve_by_label(three_versions):
    set_label("p", "staging", 2)
    assert library.resolve_version("p", label="staging").number == 2


def test_label_errors(three_versions):
    with pytest.raises(NotFound):
        set_label("p", "production", 9)
    with pytest.raises(NotFound):
        set_label("nope", "production", 1)
    with pytest.raises(Unprocessable):
        set_label("p", "Bad Label", 1)
    with pytest.raises(NotFound):
        rollback_label("p", "never-set")
    set_label("p", "production", 1)
    with pytest.raises(Conflict):
        rollback_label("p", "production")
    assert label_to_dict(library.get_label(library.get_prompt("p"), "production"))["version"] == 1
