"""Plugin discovery through the `promptyard.plugins` entry-point group, broken plugins listed with their error."""

from __future__ import annotations

import textwrap

import pytest
from flask import Flask

from promptyard.errors import NotFound, Unprocessable
from promptyard.plugins import registry as registry_module
from promptyard.plugins.base import LLMPlugin
from promptyard.plugins.openai_backend import OpenAICompatiblePlugin
from promptyard.plugins.registry import PluginRegistry
from promptyard.plugins.transformers_backend import TransformersPlugin

GOOD_PLUGIN = '''
from promptyard.plugins.base import Generation, LLMPlugin


class EchoPlugin(LLMPlugin):
    name = "echo"
    description = "Echoes the prompt."

    def generate(self, prompt, params):
        return Generation(text=str(prompt))

    def stream(self, prompt, params):
        yield str(prompt)
        return Generation(text=str(prompt))
'''

ENTRY_POINTS = """
[promptyard.plugins]
echo = fake_plugins_good:EchoPlugin
broken-import = fake_plugins_missing_dependency:Plugin
not-a-tool = fake_plugins_good:Generation
abstract = fake_plugins_good:LLMPlugin
missing-attribute = fake_plugins_good:NoSuchClass
transformers = fake_plugins_good:EchoPlugin
"""


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """An installed third-party distribution with one good and several broken plugins."""
    (tmp_path / "fake_plugins_good.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    (tmp_path / "fake_plugins_missing_dependency.py").write_text("import a_package_nobody_installed\n")
    dist_info = tmp_path / "fake_promptyard_plugins-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-promptyard-plugins\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_are_discovered_through_entry_points():
    registry = PluginRegistry()
    registry.discover(builtin_only=True)
    assert registry.get("transformers").factory is TransformersPlugin
    assert registry.get("openai-compatible").factory is OpenAICompatiblePlugin
    listed = {item["name"]: item for item in registry.list()}
    assert listed["transformers"]["builtin"] is True
    assert listed["transformers"]["kind"] == "llm"
    assert listed["transformers"]["status"] == "ok"
    assert listed["openai-compatible"]["version"]


def test_third_party_plugins_load_and_broken_ones_are_listed_with_their_error(fake_distribution):
    registry = PluginRegistry()
    registry.discover()
    listed = {item["name"]: item for item in registry.list()}
    assert listed["echo"] == {
        "name": "echo", "kind": "llm", "version": "1.2.3", "description": "Echoes the prompt.",
        "status": "ok", "error": None, "builtin": False,
    }
    assert listed["broken-import"]["status"] == "error"
    assert "a_package_nobody_installed" in listed["broken-import"]["error"]
    assert "not an AgentTool" in listed["not-a-tool"]["error"]
    assert "does not implement" in listed["abstract"]["error"]
    assert listed["missing-attribute"]["status"] == "error"
    assert {"transformers", "openai-compatible"} <= set(listed)
    # A third-party plugin cannot take a built-in's name.
    assert registry.get("transformers").factory is TransformersPlugin


def test_builtin_only_leaves_third_party_plugins_out(fake_distribution):
    registry = PluginRegistry()
    registry.discover(builtin_only=True)
    assert "echo" not in registry.names()
    assert "broken-import" not in registry.names()


def test_create_builds_an_instance_for_a_source(fake_distribution):
    registry = PluginRegistry()
    registry.discover()
    plugin = registry.create("echo", "anything", options={"a": 1})
    assert isinstance(plugin, LLMPlugin)
    assert (plugin.source, plugin.options) == ("anything", {"a": 1})
    with pytest.raises(Unprocessable) as caught:
        registry.create("broken-import", "x")
    assert caught.value.code == "plugin_error"
    assert "a_package_nobody_installed" in caught.value.message


def test_unknown_plugin_is_a_404_naming_the_installed_ones():
    registry = PluginRegistry()
    registry.discover(builtin_only=True)
    with pytest.raises(NotFound) as caught:
        registry.create("nope", "x")
    assert caught.value.code == "plugin_not_found"
    assert "openai-compatible" in caught.value.message


def test_a_tool_is_not_a_language_model():
    from promptyard.plugins.base import AgentTool

    class Calculator(AgentTool):
        name = "calc"
        description = "Adds."

        def execute(self, **kwargs):
            return {"sum": kwargs["a"] + kwargs["b"]}

    registry = PluginRegistry()
    registry.register("calc", Calculator)
    assert registry.list()[0]["kind"] == "tool"
    with pytest.raises(Unprocessable) as caught:
        registry.create("calc", "x")
    assert caught.value.code == "not_an_llm_plugin"


def test_init_app_puts_the_registry_on_the_app():
    app = Flask(__name__)
    app.testing = True
    registry_module.init_app(app)
    with app.app_context():
        assert {"transformers", "openai-compatible"} <= set(registry_module.get_registry().names())
