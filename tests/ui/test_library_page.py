"""Library page: empty state, search and tag filter, create (garbage rejected), open in the editor."""

from __future__ import annotations

from tests.ui.ui_helpers import assert_no_crash, texts


def button(at, label):
    return next(b for b in at.button if b.label == label)


def test_empty_library_invites_to_create(open_page):
    at = open_page("library")
    assert "The library is empty" in texts(at)


def test_lists_prompts_with_labels_and_filters_by_tag(open_page, api):
    api.create_prompt("alpha", "Do {{ x }}", tags=["python"], description="first one")
    api.create_prompt("beta", "Do {{ y }}", tags=["sql"])
    api.set_label("alpha", "production", 1)
    at = open_page("library")
    table = at.dataframe[0].value
    assert sorted(table["name"]) == ["alpha", "beta"]
    assert "production → v1" in table.set_index("name").loc["alpha", "labels"]
    next(s for s in at.selectbox if s.label == "Tag").set_value("sql").run()
    assert list(at.dataframe[0].value["name"]) == ["beta"]
    at.text_input[0].input("nothing-matches-this").run()
    assert "No prompt matches this search" in texts(at)


def test_create_prompt_through_the_form(open_page, api):
    at = open_page("library")
    fields = {t.label: t for t in at.text_input}
    fields["Name"].input("fix-bug")
    fields["Tags"].input("python, bugs")
    at.text_area[0].input("Fix this bug:\n{{ code }}")
    button(at, "Create prompt").click().run()
    assert_no_crash(at)
    created = api.get_prompt("fix-bug")
    assert created["tags"] == ["python", "bugs"]
    assert created["latest_version"]["template"] == "Fix this bug:\n{{ code }}"
    assert "Created prompt 'fix-bug'" in texts(at)


def test_create_with_a_bad_name_shows_the_api_message_and_creates_nothing(open_page, api):
    at = open_page("library")
    {t.label: t for t in at.text_input}["Name"].input("Not A Valid Name!")
    at.text_area[0].input("x")
    button(at, "Create prompt").click().run()
    assert_no_crash(at)
    assert at.error and "name" in at.error[0].value
    assert api.list_prompts()["total"] == 0


def test_create_without_a_template_is_refused(open_page, api):
    at = open_page("library")
    {t.label: t for t in at.text_input}["Name"].input("empty")
    button(at, "Create prompt").click().run()
    assert "needs a name and a template" in texts(at)
    assert api.list_prompts()["total"] == 0


def test_open_in_editor_and_workbench(open_page, api):
    api.create_prompt("greet", "Say hello to {{ who }}")
    at = open_page("library")
    next(b for b in at.button if b.label == "Open in editor").click().run()
    assert_no_crash(at)
    assert at.session_state["prompt"] == "greet" and any(t.value == "Prompt editor" for t in at.title)
