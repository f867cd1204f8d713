"""Editor page: save a version, diffs side by side and unified, move labels, roll back."""

from __future__ import annotations

import pytest
from tests.ui.ui_helpers import assert_no_crash, texts


@pytest.fixture
def greet(api):
    api.create_prompt("greet", "Say hello to {{ who }}", message="first")
    return api


def button(at, label):
    return next(b for b in at.button if b.label == label)


def show(at, name):
    next(r for r in at.radio if r.key == "editor_section").set_value(name).run()


def area(at, prefix):
    return next(t for t in at.text_area if t.label.startswith(prefix))


def test_empty_library(open_page):
    at = open_page("editor")
    assert "The library is empty" in texts(at)


def test_save_a_new_version(open_page, greet):
    at = open_page("editor", prompt="greet")
    area(at, "Template").input("Say hi to {{ who }}")
    next(t for t in at.text_input if t.label == "Message").input("shorter")
    button(at, "Save as new version").click().run()
    assert_no_crash(at)
    versions = greet.list_versions("greet")["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["message"] == "shorter"
    assert "Saved version 2" in texts(at)


def test_bad_params_json_saves_nothing(open_page, greet):
    at = open_page("editor", prompt="greet")
    area(at, "Template").input("changed {{ who }}")
    area(at, "Default params").input("{oops")
    button(at, "Save as new version").click().run()
    assert_no_crash(at)
    assert "Default params is not valid JSON" in texts(at)
    assert greet.list_versions("greet")["total"] == 1


def test_invalid_variables_are_reported_by_the_api(open_page, greet):
    at = open_page("editor", prompt="greet")
    area(at, "Declared variables").input('[{"name": "who", "type": "colour"}]')
    area(at, "Template").input("changed {{ who }}")
    button(at, "Save as new version").click().run()
    assert_no_crash(at)
    assert at.error
    assert greet.list_versions("greet")["total"] == 1


def test_diff_side_by_side_and_unified(open_page, greet):
    greet.create_version("greet", "Say hi to {{ who }}")
    at = open_page("editor", prompt="greet")
    show(at, "Diff")
    html = "".join(str(h.proto.body) for h in at.get("html"))
    assert "Say hello to {{ who }}" in html and "Say hi to {{ who }}" in html
    assert "class='del'" in html and "class='add'" in html
    next(r for r in at.radio if r.label == "Layout").set_value("Unified").run()
    assert_no_crash(at)
    unified = next(c.value for c in at.code if "@@" in c.value)
    assert "-Say hello to {{ who }}" in unified and "+Say hi to {{ who }}" in unified


def test_move_label_and_roll_back(open_page, greet):
    greet.create_version("greet", "Say hi to {{ who }}")
    at = open_page("editor", prompt="greet")
    show(at, "Labels")
    next(s for s in at.selectbox if s.label == "Version").set_value(1)
    button(at, "Move label").click().run()
    assert greet.get_prompt("greet")["labels"] == {"production": 1}
    next(s for s in at.selectbox if s.label == "Version").set_value(2)
    button(at, "Move label").click().run()
    assert_no_crash(at)
    assert greet.get_prompt("greet")["labels"] == {"production": 2}
    assert "'production' now points at v2" in texts(at)
    assert at.dataframe[-1].value.shape[0] >= 2  # the label's history of moves
    button(at, "Roll back").click().run()
    assert_no_crash(at)
    assert greet.get_prompt("greet")["labels"] == {"production": 1}


def test_bad_label_name_reads_as_a_message(open_page, greet):
    at = open_page("editor", prompt="greet")
    show(at, "Labels")
    next(t for t in at.text_input if t.label == "Label").input("Bad Label!")
    button(at, "Move label").click().run()
    assert_no_crash(at)
    assert at.error
    assert greet.get_prompt("greet")["labels"] == {}
