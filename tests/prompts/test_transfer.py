"""Export and import: lossless round trip, all or nothing, merging into an existing library."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from promptyard.db import db
from promptyard.db.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from promptyard.errors import BadRequest, Conflict, Unprocessable
from promptyard.prompts import library, transfer
from promptyard.prompts.labels import set_label
from promptyard.prompts.versions import add_version


def empty_library() -> None:
    for table in (PromptLabelMove, PromptLabel, PromptVersion, Prompt):
        db.session.execute(delete(table))
    db.session.commit()


def build_sample() -> None:
    library.create_prompt("alpha", "A {{ x }}", description="first", tags=["t1"], task_type="code-generation", author="ann")
    add_version("alpha", "A2 {{ x }} {{ n }}", variables=[{"name": "x"}, {"name": "n", "type": "integer", "required": False, "default": 2}], params={"temperature": 0.3}, message="m")
    set_label("alpha", "production", 1)
    set_label("alpha", "production", 2)
    library.create_prompt("beta", "B")
    library.archive_prompt("beta")


def test_export_then_import_into_an_empty_library_is_lossless(app):
    build_sample()
    first = transfer.export_library()
    for fmt in ("json", "yaml"):
        empty_library()
        counts = transfer.import_library(transfer.load(transfer.dump(first, fmt), fmt))
        assert counts == {"prompts_created": 2, "versions_created": 3, "versions_skipped": 0, "labels_set": 1}
        assert transfer.export_library() == first


def test_importing_again_skips_identical_versions_and_appends_new_ones(app):
    build_sample()
    document = transfer.export_library()
    assert transfer.import_library(document)["versions_skipped"] == 3
    document["prompts"][0]["versions"].append({"version": 3, "template": "A3 {{ x }}"})
    document["prompts"][0]["labels"] = {"production": 3}
    counts = transfer.import_library(document)
    assert counts["versions_created"] == 1 and counts["labels_set"] == 1
    assert library.resolve_version("alpha", label="production").number == 3


def test_conflicting_history_is_refused_and_changes_nothing(app):
    build_sample()
    document = transfer.export_library()
    document["prompts"].insert(0, {"name": "new-one", "versions": [{"version": 1, "template": "N"}]})
    document["prompts"][1]["versions"][0]["template"] = "something else"
    with pytest.raises(Conflict) as info:
        transfer.import_library(document)
    assert info.value.details["prompt"] == "alpha"
    assert library.list_prompts(include_archived=True)[1] == 2


BAD_PROMPTS = [
    {"name": "Bad Name", "versions": [{"version": 1, "template": "x"}]},
    {"name": "bad", "versions": [{"version": 1, "template": "{% if %}"}]},
    {"name": "bad", "versions": [{"version": 2, "template": "x"}]},
    {"name": "bad", "versions": []},
    {"name": "bad", "versions": [{"version": 1, "template": "x"}], "labels": {"production": 4}},
    {"name": "bad", "versions": [{"version": 1, "template": "x"}], "colour": "red"},
    {"name": "bad", "versions": [{"version": 1, "template": "{{ y }}", "variables": [{"name": "x"}]}]},
    "not a mapping",
]


@pytest.mark.parametrize("bad", BAD_PROMPTS)
def test_one_bad_prompt_in_the_middle_imports_nothing(app, bad):
    good = {"name": "good", "versions": [{"version": 1, "template": "G {{ x }}"}], "labels": {"production": 1}}
    later = {"name": "later", "versions": [{"version": 1, "template": "L"}]}
    with pytest.raises(Unprocessable) as info:
        transfer.import_library({"prompts": [good, bad, later]})
    assert info.value.details["index"] == 1
    assert "nothing was imported" in info.value.message
    assert library.list_prompts(include_archived=True)[1] == 0


def test_malformed_documents(app):
    with pytest.raises(BadRequest):
        transfer.load("prompts: [", "yaml")
    with pytest.raises(BadRequest):
        transfer.load("{", "json")
    for document in (None, [], {"prompts": "x"}, {"prompts": [], "extra": 1}, {"format": "other", "prompts": []}):
        with pytest.raises(Unprocessable):
            transfer.import_library(document)
    same = {"name": "dup", "versions": [{"version": 1, "template": "x"}]}
    with pytest.raises(Unprocessable):
        transfer.import_library({"prompts": [same, same]})


names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
variable_names = st.sampled_from(["code", "lang", "n", "items"])
version_docs = st.builds(
    lambda text, used, params, message: {
        "template": "T " + text + "".join(f" {{{{ {v} }}}}" for v in used),
        "params": params,
        "message": message,
    },
    words.filter(lambda s: "{" not in s and "}" not in s and "%" not in s and "#" not in s),
    st.lists(variable_names, unique=True, max_size=3),
    st.fixed_dictionaries({}, optional={"temperature": st.integers(0, 5), "max_new_tokens": st.integers(1, 512),
                                        "top_p": st.floats(0.01, 1.0)}),
    words,
)
prompt_docs = st.fixed_dictionaries(
    {
        "description": words,
        "tags": st.lists(st.sampled_from(["sql", "python", "review"]), unique=True, max_size=2),
        "archived": st.booleans(),
        "versions": st.lists(version_docs, min_size=1, max_size=3),
        "labels": st.dictionaries(st.sampled_from(["production", "staging"]), st.integers(1, 3), max_size=2),
    }
)
libraries = st.dictionaries(names, prompt_docs, max_size=3)


@settings(max_examples=12)
@given(spec=libraries)
def test_round_trip_property(app, spec):
    empty_library()
    for name, doc in spec.items():
        first, *rest = doc["versions"]
        library.create_prompt(name, first["template"], description=doc["description"], tags=doc["tags"], params=first["params"], message=first["message"])
        for version in rest:
            add_version(name, version["template"], params=version["params"], message=version["message"])
        count = len(library.get_prompt(name).versions)
        for label, number in doc["labels"].items():
            set_label(name, label, min(number, count))
        if doc["archived"]:
            library.archive_prompt(name)
    exported = transfer.export_library()
    text = transfer.dump(exported, "yaml")
    empty_library()
    transfer.import_library(yaml.safe_load(text))
    assert transfer.export_library() == exported
