"""Pipeline fixtures: function-backed models in the manager; prompts and experiments made by the prompts service."""

from __future__ import annotations

import pytest

from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin, prompt_text
from promptyard.prompts.experiments import create_experiment
from promptyard.prompts.labels import set_label
from promptyard.prompts.library import create_prompt
from promptyard.prompts.versions import add_version


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
        declared = variables if variables is not None else [{"name": "name", "type": "string", "required": True}]
        per_version = params or [{}] * len(templates)
        prompt, _ = create_prompt(name, templates[0], variables=declared, params=per_version[0])
        for template, version_params in zip(templates[1:], per_version[1:]):
            add_version(name, template, variables=declared, params=version_params)
        for label, number in (labels or {}).items():
            set_label(name, label, number)
        return prompt

    return make


@pytest.fixture
def make_experiment(app):
    """make_experiment(name, prompt, {version_number: weight}) -> the running Experiment, via the service."""

    def make(name, prompt, weights):
        arms = [{"version": number, "weight": weight} for number, weight in weights.items()]
        return create_experiment(name, prompt.name, arms)

    return make
