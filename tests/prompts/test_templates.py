"""Templates: declarations, checks at save time, typed rendering and the sandbox."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptyard.errors import Unprocessable
from promptyard.prompts.templates import TemplateError, VariableError, read_names, render, validate_template


def test_variables_are_declared_from_the_template_when_omitted():
    declared = validate_template("Hello {{ who }}, {% for x in items %}{{ x }}{% endfor %} {{ range(2) | list }}", None)
    assert [(v["name"], v["type"], v["required"]) for v in declared] == [("who", "string", True), ("items", "string", True)]


def test_template_error_is_a_422():
    assert issubclass(TemplateError, Unprocessable) and TemplateError.status == 422
    assert issubclass(VariableError, TemplateError)


def test_unparseable_template_is_refused_with_line_and_reason():
    with pytest.raises(TemplateError) as info:
        validate_template("line one\n{% for x in y %}\n{{ x }", None)
    assert info.value.details["line"] == 3
    assert info.value.details["reason"]
    assert "line 3" in info.value.message


def test_reading_an_undeclared_variable_is_refused():
    with pytest.raises(TemplateError) as info:
        validate_template("{{ a }} {{ b }}", [{"name": "a"}])
    assert info.value.details["undeclared"] == ["b"]


@pytest.mark.parametrize(
    "declared, fragment",
    [
        ([{"name": "a", "type": "float"}], "unknown type"),
        ([{"name": "a", "colour": "red"}], "unknown field"),
        ([{"name": "a"}, {"name": "a"}], "declared twice"),
        ([{"name": "not an identifier"}], "valid identifier"),
        ([{"name": "a", "type": "integer", "default": "3"}], "not a integer"),
        ([{"name": "a", "required": "yes"}], "'required'"),
        ("a", "must be a list"),
    ],
)
def test_bad_declarations_are_refused(declared, fragment):
    with pytest.raises(TemplateError) as info:
        validate_template("{{ a }}", declared)
    assert fragment in info.value.message


def test_empty_template_is_refused():
    with pytest.raises(TemplateError):
        validate_template("   ", None)


def test_render_fills_defaults_and_checks_types():
    declared = validate_template(
        "{{ n + 1 }} {{ ratio }} {{ flag }} {{ items | join(',') }} {{ opt }}|",
        [
            {"name": "n", "type": "integer"},
            {"name": "ratio", "type": "number", "required": False, "default": 0.5},
            {"name": "flag", "type": "boolean", "required": False},
            {"name": "items", "type": "list"},
            {"name": "opt", "required": False},
        ],
    )
    assert render("{{ n + 1 }} {{ ratio }} {{ flag }} {{ items | join(',') }} {{ opt }}|", declared, {"n": 1, "items": [1, 2]}) == "2 0.5 False 1,2 |"
    for bad in ({"n": "1", "items": []}, {"n": True, "items": []}, {"n": 1, "items": "x"}, {"n": 1, "items": [], "ratio": "x"}):
        with pytest.raises(VariableError) as info:
            render("{{ n }}", declared, bad)
        assert info.value.details["variable"] in bad


def test_render_names_missing_and_undeclared_variables():
    declared = validate_template("{{ a }}{{ b }}", None)
    with pytest.raises(VariableError) as info:
        render("{{ a }}{{ b }}", declared, {"a": "x", "c": "y"})
    assert info.value.details == {"missing": ["b"], "undeclared": ["c"]}
    assert "b" in info.value.message and "c" in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ ''['__class__'] }}",
    ],
)
def test_private_attributes_are_refused_at_save_time(template):
    with pytest.raises(TemplateError) as info:
        validate_template(template, None)
    assert "private attribute" in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ ''|attr('__class__') }}",
        "{% set x = 'a'|attr('__cla' ~ 'ss__') %}{{ x.__mro__ }}",
        "{{ range.__self__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{{ {}.update(a=1) }}",
    ],
)
def test_sandbox_escapes_fail_safely_at_render_time(template):
    with pytest.raises(TemplateError):
        render(template, [], {})


@pytest.mark.parametrize(
    "template, code",
    [
        ("{{ 'x' * 1000000000000 }}", "template_unsafe"),
        ("{{ [1] * 10000000 }}", "template_unsafe"),
        ("{{ 2 ** 100000000 }}", "template_unsafe"),
        ("{% for i in range(100000) %}{% for j in range(100) %}xy{% endfor %}{% endfor %}", "render_too_large"),
    ],
)
def test_resource_hungry_templates_are_stopped(template, code):
    with pytest.raises(TemplateError) as info:
        render(template, [], {})
    assert info.value.code == code


def test_small_repetition_and_powers_still_work():
    assert render("{{ '-' * 3 }}{{ 2 ** 3 }}", [], {}) == "---8"


def test_runtime_errors_are_template_errors():
    with pytest.raises(TemplateError) as info:
        render("{{ 1 / n }}", [{"name": "n", "type": "integer", "required": True, "default": None, "description": ""}], {"n": 0})
    assert info.value.code == "render_failed"


def test_read_names_ignores_loop_variables_and_globals():
    assert read_names("{% for row in rows %}{{ loop.index }}{{ row }}{% endfor %}{{ dict(a=1) }}") == ["rows"]


FRAGMENTS = [
    "{{ ", " }}", "{% ", " %}", "{# ", " #}", "a", "b", "x", ".", "__class__", "_x", "|", "upper", "attr('__class__')",
    "(", ")", "[", "]", "'s'", "1", "0", "/", "+", "for ", "in ", "if ", "endfor", "endif", "set ", "=", "range(3)",
    "cycler", "self", "loop", "\n", "text ", "~", ",", "join", "int", "format", "%", "*", "macro ", "call", "filter ",
]
templates = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join), st.text(max_size=40))
values = st.dictionaries(
    st.sampled_from(["a", "b", "x", "y"]),
    st.one_of(st.text(max_size=5), st.integers(), st.floats(allow_nan=True), st.booleans(), st.lists(st.integers(), max_size=3), st.none()),
    max_size=4,
)


@settings(max_examples=80)
@given(template=templates, variables=values)
def test_rendering_never_raises_anything_but_template_errors(template, variables):
    try:
        declared = validate_template(template, None)
    except TemplateError:
        declared = [{"name": n, "type": "string", "required": True, "default": None, "description": ""} for n in ("a", "x")]
    try:
        render(template, declared, variables)
    except TemplateError:
        pass
