"""Pipeline fixtures: function-backed models installed in the manager and prompts written with the db models."""

from __future__ import annotations

import hashlib

import pytest

from promptyard.db import db
from promptyard.db.models import Experiment, ExperimentArm, Prompt, PromptLabel, PromptVersion
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin, prompt_text


class RecordingPlugin(FunctionPlugin):
    """A FunctionPlugin that remembers every (prompt, params) it was asked to generate for."""

    def __init__(self, fn, **kwargs):
        super().__init__(fn, **kwargs)
        self.calls = []

    def generate(self, prompt, params):
        self.calls.append((prompt, params))
        return super().generate(prompt, params)

    def stream(self, prompt, params):
        self.calls.append((prompt, params))
        return (yield from super().stream(prompt, params))


@pytest.fixture
def install(app):
    """install(name, fn=echo, **plugin_kwargs) -> the RecordingPlugin, registered and loaded."""

    def install_model(name="echo", fn=None, *, pricing=None, params=None, **kwargs):
        plugin = RecordingPlugin(fn or (lambda prompt, params: "echo: " + prompt_text(prompt)),
                                 source=kwargs.pop("source", f"fake/{name}"), **kwargs)
        install_plugin(name, plugin, pricing=pricing, params=params)
        return plugin

    return install_model


@pytest.fixture
def make_prompt(app):
    """make_prompt(name, [template, ...], params=[...], labels={"production": 1}) -> the Prompt."""

    def make(name, templates, *, params=None, labels=None, variables=None):
        prompt = Prompt(name=name, description="", tags=[])
        db.session.add(prompt)
        db.session.flush()
        versions = []
        for number, template in enumerate(templates, start=1):
            declared = variables if variables is not None else [{"name": "name", "type": "string", "required": True}]
            version = PromptVersion(
                prompt_id=prompt.id, number=number, template=template, variables=declared,
                params=(params or [{}] * len(templates))[number - 1], message="",
                content_hash=hashlib.sha256(template.encode()).hexdigest(),
            )
            db.session.add(version)
            versions.append(version)
        db.session.flush()
        for label, number in (labels or {}).items():
            db.session.add(PromptLabel(prompt_id=prompt.id, name=label, version_id=versions[number - 1].id))
        db.session.commit()
        return prompt

    return make


@pytest.fixture
def make_experiment(app):
    """make_experiment(name, prompt, {version_number: weight}) -> the Experiment."""

    def make(name, prompt, weights):
        experiment = Experiment(name=name, prompt_id=prompt.id)
        db.session.add(experiment)
        db.session.flush()
        by_number = {v.number: v for v in prompt.versions}
        for position, (number, weight) in enumerate(weights.items()):
            db.session.add(ExperimentArm(experiment_id=experiment.id, version_id=by_number[number].id,
                                         weight=weight, position=position))
        db.session.commit()
        return experiment

    return make
