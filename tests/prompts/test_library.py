"""The library service: create, find, search, update, archive and the cross-team lookups."""

from __future__ import annotations

import pytest

from promptyard.db import db
from promptyard.db.models import Prompt
from promptyard.errors import Conflict, NotFound, Unprocessable
from promptyard.prompts import library
from promptyard.prompts.templates import TemplateError, render_version
from promptyard.prompts.versions import add_version


def make(name="greet", template="Hello {{ who }}", **kw):
    return library.create_prompt(name, template, **kw)[0]


def test_create_get_and_resolve(app):
    make(description="says hi", tags=["a"], params={"temperature": 0.1}, author="me")
    prompt = library.get_prompt("greet")
    data = library.prompt_to_dict(prompt)
    assert data["latest_version"]["version"] == 1
    assert data["latest_version"]["author"] == "me"
    assert data["latest_version"]["variables"][0]["name"] == "who"
    assert data["labels"] == {} and data["archived"] is False
    assert library.resolve_version("greet").number == 1
    assert render_version(library.resolve_version("greet", version=1), {"who": "Ada"}) == "Hello Ada"


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "has space", "a" * 101, "export", "import", "ü"])
def test_names_outside_the_pattern_are_refused(app, name):
    with pytest.raises(Unprocessable):
        make(name=name)
    assert db.session.query(Prompt).count() == 0


def test_duplicate_name_is_a_conflict(app):
    make()
    with pytest.raises(Conflict):
        make()


def test_invalid_template_creates_nothing(app):
    with pytest.raises(TemplateError):
        make(template="{% if %}")
    assert db.session.query(Prompt).count() == 0


def test_lookups_raise_not_found(app):
    make()
    with pytest.raises(NotFound) as info:
        library.get_prompt("nope")
    assert info.value.code == "prompt_not_found"
    with pytest.raises(NotFound):
        library.resolve_version("greet", version=9)
    with pytest.raises(NotFound):
        library.resolve_version("greet", label="production")
    with pytest.raises(Unprocessable):
        library.resolve_version("greet", version=1, label="x")


def test_search_by_name_description_latest_template_and_tag(app):
    make("alpha", "Write SQL for {{ q }}", tags=["sql"])
    make("beta", "Explain {{ code }}", description="Explains code 100%")
    make("gamma", "old text {{ x }}")
    add_version("gamma", "new words {{ x }}")
    names = lambda **kw: [p.name for p in library.list_prompts(**kw)[0]]  # noqa: E731
    assert names(q="SQL") == ["alpha"]
    assert names(q="explains") == ["beta"]
    assert names(q="100%") == ["beta"]
    assert names(q="old text") == []  # only the latest version's template is searched
    assert names(q="new words") == ["gamma"]
    assert names(tag="sql") == ["alpha"]
    rows, total = library.list_prompts(limit=1, offset=1)
    assert [p.name for p in rows] == ["beta"] and total == 3


def test_update_metadata_and_archive(app):
    make()
    library.update_prompt("greet", description="new", tags=["x", "x", "y"])
    assert library.get_prompt("greet").tags == ["x", "y"]
    with pytest.raises(Unprocessable):
        library.update_prompt("greet", tags=[""])
    library.archive_prompt("greet")
    assert library.list_prompts()[1] == 0
    assert library.list_prompts(include_archived=True)[1] == 1
    assert library.resolve_version("greet").number == 1  # history stays resolvable
    with pytest.raises(Conflict):
        library.update_prompt("greet", description="no")
    with pytest.raises(Conflict):
        add_version("greet", "Bye {{ who }}")


def test_creating_an_archived_name_restores_it_with_history(app):
    make()
    library.archive_prompt("greet")
    prompt, _ = library.create_prompt("greet", "Hi {{ who }}", description="back")
    assert not prompt.archived and prompt.description == "back"
    assert [v.number for v in prompt.versions] == [1, 2]


def test_restoring_with_a_bad_template_leaves_it_archived(app):
    make()
    library.archive_prompt("greet")
    with pytest.raises(TemplateError):
        library.create_prompt("greet", "{{ x")
    assert library.get_prompt("greet").archived
