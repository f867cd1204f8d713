"""Which prompt version a request runs (version, label or experiment arm) and the text it renders to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promptyard.errors import Unprocessable
from promptyard.prompts.experiments import assign_arm, get_experiment
from promptyard.prompts.library import resolve_version
from promptyard.prompts.templates import render_version


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
        row = assign_arm(exp.name, subject).version
        experiment_id = exp.id
    else:
        row = resolve_version(prompt, version=version, label=label)
    text = render_version(row, variables or {})
    return ResolvedPrompt(
        prompt_id=row.prompt_id, prompt_name=row.prompt.name, version_id=row.id, version_number=row.number,
        text=text, params=dict(row.params or {}), label=label, experiment_id=experiment_id,
    )
