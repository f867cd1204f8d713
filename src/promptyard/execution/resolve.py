"""Which prompt version a request runs (version, label or experiment arm) and the text it renders to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from promptyard.db import db
from promptyard.db.models import Prompt, PromptLabel, PromptVersion
from promptyard.errors import NotFound, Unprocessable
from promptyard.execution.assignment import assign_version, get_experiment
from promptyard.optional import import_optional


@dataclass
class ResolvedPrompt:
    """Plain values copied out of the rows, so nothing below needs the session."""

    prompt_id: int
    prompt_name: str
    version_id: int
    version_number: int
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    experiment_id: int | None = None


def resolve_prompt(
    prompt: str | None,
    *,
    version: int | None = None,
    label: str | None = None,
    experiment: str | None = None,
    subject: str | None = None,
    variables: dict[str, Any] | None = None,
) -> ResolvedPrompt:
    """Pick the version (404 for unknown prompt, version, label or experiment) and render it (422)."""
    experiment_id = None
    if experiment is not None:
        if version is not None or label is not None:
            raise Unprocessable("Give an experiment or a version/label, not both.", code="ambiguous_version")
        if not subject:
            raise Unprocessable("An experiment needs a 'subject' to assign an arm to.", code="subject_required",
                                details={"field": "subject"})
        exp = get_experiment(experiment)
        if prompt is not None and prompt != exp.prompt.name:
            raise Unprocessable(f"Experiment '{experiment}' tests prompt '{exp.prompt.name}', not '{prompt}'.",
                                code="experiment_prompt_mismatch")
        row = assign_version(exp, subject)
        experiment_id = exp.id
    else:
        if version is not None and label is not None:
            raise Unprocessable("Give a version or a label, not both.", code="ambiguous_version")
        row = _resolve_version(prompt, version, label)
    text = render(row, variables or {})
    return ResolvedPrompt(
        prompt_id=row.prompt_id, prompt_name=row.prompt.name, version_id=row.id, version_number=row.number,
        text=text, params=dict(row.params or {}), label=label, experiment_id=experiment_id,
    )


def render(version: PromptVersion, variables: dict[str, Any]) -> str:
    """The prompts service's renderer when present, else a strict Jinja2 fallback."""
    templates = import_optional("promptyard.prompts.templates")
    if templates is not None and hasattr(templates, "render_version"):
        return templates.render_version(version, variables)
    return _fallback_render(version, variables)


def _resolve_version(name: str, version: int | None, label: str | None) -> PromptVersion:
    library = import_optional("promptyard.prompts.library")
    if library is not None and hasattr(library, "resolve_version"):
        return library.resolve_version(name, version=version, label=label)
    prompt = db.session.scalar(select(Prompt).where(Prompt.name == name))
    if prompt is None:
        raise NotFound(f"No prompt named '{name}'.", code="prompt_not_found", details={"prompt": name})
    if version is not None:
        row = db.session.scalar(
            select(PromptVersion).where(PromptVersion.prompt_id == prompt.id, PromptVersion.number == version)
        )
        if row is None:
            raise NotFound(f"Prompt '{name}' has no version {version}.", code="version_not_found")
        return row
    if label is not None:
        pointer = db.session.scalar(
            select(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label)
        )
        if pointer is None:
            raise NotFound(f"Prompt '{name}' has no label '{label}'.", code="label_not_found")
        return pointer.version
    row = db.session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt.id).order_by(PromptVersion.number.desc())
    )
    if row is None:
        raise NotFound(f"Prompt '{name}' has no versions.", code="version_not_found")
    return row


def _fallback_render(version: PromptVersion, variables: dict[str, Any]) -> str:
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    values = {v["name"]: v["default"] for v in version.variables or [] if "default" in v}
    values.update(variables)
    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    try:
        return env.from_string(version.template).render(**values)
    except TemplateError as exc:
        raise Unprocessable(f"The prompt could not be rendered: {exc}.", code="template_error") from exc
