"""Jinja2 templates in a sandbox: declared, typed variables; checked when saved and when rendered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from promptyard.errors import Unprocessable

if TYPE_CHECKING:
    from promptyard.db.models import PromptVersion

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list")
VARIABLE_FIELDS = ("name", "type", "required", "default", "description")
# What an optional variable without a default renders as, so `{% if x %}` works under StrictUndefined.
EMPTY_VALUES: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False, "list": []}
# Names the environment provides itself; reading them does not need a declaration.
ALLOWED_GLOBALS = ("range", "dict", "namespace", "cycler", "joiner")
MAX_OUTPUT_CHARS = 1_000_000
MAX_EXPONENT = 1000


class TemplateError(Unprocessable):
    """A template that cannot be saved or rendered (422)."""

    code = "template_error"


class VariableError(TemplateError):
    """Variables that are missing, undeclared or of the wrong type (422)."""

    code = "invalid_variables"


class PromptSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, also refusing `*` and `**` that would build enormous values (`'x' * 10**10`)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeats = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if repeats and len(seq) * times > MAX_OUTPUT_CHARS:
                    raise SecurityError("repeating a value that many times would be too large")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed")
        return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
    # Immutable: a template may not mutate the values it is given (list.append, dict.update, ...).
    env = PromptSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals = {name: env.globals[name] for name in ALLOWED_GLOBALS if name in env.globals}
    return env


ENV = _environment()


def parse(template: str) -> nodes.Template:
    """Parse a template, turning a syntax error into a TemplateError with the line and the reason."""
    try:
        return ENV.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc) from None


def _syntax_error(exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError(
        f"The template does not parse: line {exc.lineno}: {exc.message}.",
        code="invalid_template",
        details={"line": exc.lineno, "reason": exc.message},
    )


def read_names(template: str) -> list[str]:
    """Every variable name the template reads (in first-seen order), without the environment's globals."""
    ast = parse(template)
    names = meta.find_undeclared_variables(ast) - set(ENV.globals)
    order = [node.name for node in ast.find_all(nodes.Name) if node.name in names]
    return list(dict.fromkeys(order))


def _private_access(ast: nodes.Template) -> tuple[int, str] | None:
    """The first `x._private` or `x['__dunder__']` in the template, which the sandbox would refuse anyway."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(attr, str) and attr.startswith("_"):
            return node.lineno, attr
    return None


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, list)


def normalize_variables(declared: list[dict[str, Any]] | None, template: str) -> list[dict[str, Any]]:
    """Declared variables with every field filled in; omitted, every name the template reads as a required string."""
    read = read_names(template)
    if declared is None:
        return [{"name": n, "type": "string", "required": True, "default": None, "description": ""} for n in read]
    if not isinstance(declared, list):
        raise TemplateError("'variables' must be a list of {name, type, ...} objects.", code="invalid_variables")
    result, seen = [], set()
    for index, item in enumerate(declared):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].isidentifier():
            raise TemplateError(
                f"Variable {index + 1} needs a 'name' that is a valid identifier.",
                code="invalid_variables",
                details={"index": index},
            )
        name = item["name"]
        unknown = set(item) - set(VARIABLE_FIELDS)
        if unknown:
            raise TemplateError(
                f"Variable '{name}' has unknown field(s): {', '.join(sorted(unknown))}.",
                code="invalid_variables",
                details={"variable": name, "fields": sorted(unknown)},
            )
        if name in seen:
            raise TemplateError(
                f"Variable '{name}' is declared twice.", code="invalid_variables", details={"variable": name}
            )
        seen.add(name)
        kind = item.get("type", "string")
        if kind not in VARIABLE_TYPES:
            raise TemplateError(
                f"Variable '{name}' has unknown type '{kind}'; use one of {', '.join(VARIABLE_TYPES)}.",
                code="invalid_variables",
                details={"variable": name},
            )
        required, default, description = item.get("required", True), item.get("default"), item.get("description", "")
        if not isinstance(required, bool) or not isinstance(description, str):
            raise TemplateError(
                f"Variable '{name}': 'required' must be true or false and 'description' text.",
                code="invalid_variables",
                details={"variable": name},
            )
        if default is not None and not _type_ok(kind, default):
            raise TemplateError(
                f"Variable '{name}': the default is not a {kind}.", code="invalid_variables", details={"variable": name}
            )
        result.append(
            {"name": name, "type": kind, "required": required, "default": default, "description": description}
        )
    undeclared = [n for n in read if n not in seen]
    if undeclared:
        raise TemplateError(
            f"The template reads undeclared variable(s): {', '.join(undeclared)}; "
            "declare them or leave 'variables' out.",
            code="invalid_template",
            details={"undeclared": undeclared},
        )
    return result


def validate_template(template: str, declared: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Check a template before it is saved; returns its normalized variable declarations."""
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("The template is empty.", code="invalid_template")
    ast = parse(template)
    private = _private_access(ast)
    if private:
        line, attr = private
        raise TemplateError(
            f"The template reaches the private attribute '{attr}' on line {line}, which is not allowed.",
            code="invalid_template",
            details={"line": line, "reason": f"private attribute '{attr}'"},
        )
    variables = normalize_variables(declared, template)
    _refuse_if_always_over_budget(template, variables)
    return variables


# What a save-time trial render reports: budgets a template goes over whatever its variables hold.
_BUDGET_CODES = ("render_time_budget", "render_memory_budget", "render_too_large")


def _refuse_if_always_over_budget(template: str, variables: list[dict[str, Any]]) -> None:
    """Render once with each variable's default (or its type's empty value): a template that goes over a budget
    even then (a runaway macro, `'a'|center(10**9)`) is refused when it is saved, not on every later render.
    Other failures of the trial are not the saver's concern here: real values may well render."""
    context = {v["name"]: v["default"] if v.get("default") is not None else EMPTY_VALUES[v["type"]] for v in variables}
    try:
        reply = _render_budgeted(template, context)
    except TemplateError as exc:
        if exc.code in _BUDGET_CODES:
            raise
        return
    error = reply.get("error") or {}
    if error.get("code") in _BUDGET_CODES:
        raise TemplateError(error["message"], code=error["code"], details=error.get("details") or {})


def build_context(declared: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The render context: values checked against the declarations, defaults filled in."""
    if not isinstance(values, dict):
        raise VariableError("'variables' must be an object of name: value.")
    by_name = {v["name"]: v for v in declared}
    undeclared = sorted(str(k) for k in values if k not in by_name)
    missing = [v["name"] for v in declared if v["required"] and v["name"] not in values]
    if missing or undeclared:
        parts = []
        if missing:
            parts.append(f"missing required variable(s): {', '.join(missing)}")
        if undeclared:
            parts.append(f"undeclared variable(s): {', '.join(undeclared)}")
        raise VariableError(
            f"Cannot render: {'; '.join(parts)}.", details={"missing": missing, "undeclared": undeclared}
        )
    context = {}
    for name, spec in by_name.items():
        if name in values:
            if not _type_ok(spec["type"], values[name]):
                raise VariableError(
                    f"Variable '{name}' must be a {spec['type']}.",
                    details={"variable": name, "expected": spec["type"]},
                )
            context[name] = values[name]
        else:
            default = spec.get("default")
            context[name] = default if default is not None else EMPTY_VALUES[spec["type"]]
    return context


def render(template: str, declared: list[dict[str, Any]], values: dict[str, Any]) -> str:
    """Render a template with checked variables in a render worker, within the time and memory budgets; raises
    only TemplateError (or VariableError)."""
    reply = _render_budgeted(template, build_context(declared, values))
    if "error" in reply:
        error = reply["error"]
        raise TemplateError(error["message"], code=error["code"], details=error.get("details") or {})
    return reply["text"]


def _render_budgeted(template: str, context: dict[str, Any]) -> dict[str, Any]:
    from promptyard.prompts import render_pool

    try:
        return render_pool.POOL.render(template, context)
    except render_pool.RenderBudgetExceeded as exc:
        raise budget_error(exc.budget) from None


def budget_error(budget: str) -> TemplateError:
    """The 422 for a render that went over its time or memory budget."""
    from promptyard.prompts import render_pool

    if budget == "time":
        limit = render_pool.RENDER_TIME_BUDGET_S
        return TemplateError(
            f"The template took longer than its time budget of {limit:g} s to render and was stopped.",
            code="render_time_budget", details={"budget": "time", "limit_s": limit},
        )
    limit = render_pool.RENDER_MEMORY_BUDGET_BYTES
    return TemplateError(
        f"The template needed more than its memory budget of {limit // (1024 * 1024)} MiB to render and was stopped.",
        code="render_memory_budget", details={"budget": "memory", "limit_bytes": limit},
    )


def render_in_sandbox(template: str, context: dict[str, Any]) -> dict[str, Any]:
    """Render in this process (a render worker's): {"text"} or {"error": {code, message, details}}.

    MemoryError is left to the caller, the worker, which answers and exits."""
    try:
        return {"text": _render_capped(ENV.from_string(template), context)}
    except MemoryError:
        raise
    except TemplateError as exc:
        return exc.to_dict()
    except jinja2.TemplateSyntaxError as exc:
        return _syntax_error(exc).to_dict()
    except SecurityError as exc:
        return TemplateError(f"The template tried something unsafe: {exc}.", code="template_unsafe").to_dict()
    except Exception as exc:  # noqa: BLE001 - any failure inside user template code is the template's fault
        return TemplateError(
            f"The template failed while rendering: {exc.__class__.__name__}: {exc}",
            code="render_failed",
            details={"reason": str(exc)[:500]},
        ).to_dict()


def _render_capped(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """Render chunk by chunk, stopping as soon as the output passes MAX_OUTPUT_CHARS."""
    chunks, size = [], 0
    for chunk in compiled.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(
                f"The rendered text is longer than its budget of {MAX_OUTPUT_CHARS} characters.",
                code="render_too_large", details={"budget": "output", "limit_chars": MAX_OUTPUT_CHARS},
            )
        chunks.append(chunk)
    return "".join(chunks)


def render_version(version: PromptVersion, variables: dict) -> str:
    """Render a stored version with `variables` (TemplateError names missing/undeclared ones)."""
    return render(version.template, version.variables or [], variables)
