"""Plugin registry: discovers plugins through the `promptyard.plugins` entry-point group (built-ins too)."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

from promptyard.errors import NotFound, Unprocessable
from promptyard.plugins.base import AgentTool, LLMPlugin

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "promptyard.plugins"
# Plugins that ship with promptyard; with PROMPTYARD_BUILTIN_PLUGINS_ONLY, only these are loaded.
BUILTIN_DISTRIBUTION = "promptyard"

PluginFactory = Callable[..., AgentTool]

if TYPE_CHECKING:
    from flask import Flask


@dataclass
class PluginInfo:
    name: str
    factory: PluginFactory | None
    kind: str = "llm"
    version: str = ""
    description: str = ""
    status: str = "ok"  # ok | error
    error: str | None = None
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
        }


class PluginRegistry:
    """Plugins by name; a plugin that fails to import or validate is listed with its error, never fatal."""

    def __init__(self) -> None:
        self._plugins: dict[str, PluginInfo] = {}

    def discover(self, *, builtin_only: bool = False) -> None:
        """Load every entry point of the group; with builtin_only, only those promptyard itself ships."""
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ""
            builtin = dist == BUILTIN_DISTRIBUTION
            if builtin_only and not builtin:
                continue
            existing = self._plugins.get(ep.name)
            if existing is not None and existing.builtin and not builtin:
                log.warning("plugin %s from %s ignored: a built-in plugin has that name", ep.name, dist)
                continue
            version = ep.dist.version if ep.dist else ""
            # A broken third-party plugin (even one calling sys.exit at import) must not stop the app.
            try:
                factory = ep.load()
                self.register(ep.name, factory, version=version, builtin=builtin)
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                log.warning("plugin %s failed to load: %s", ep.name, exc)
                self._plugins[ep.name] = PluginInfo(
                    name=ep.name, factory=None, version=version, status="error",
                    error=f"{exc.__class__.__name__}: {exc}", builtin=builtin,
                )

    def register(self, name: str, factory: PluginFactory, *, version: str = "", builtin: bool = False) -> None:
        """Add a plugin class (or factory); a class must be a concrete AgentTool subclass."""
        if isinstance(factory, type):
            if not issubclass(factory, AgentTool):
                raise TypeError(f"plugin {name!r} is {factory.__name__}, not an AgentTool subclass")
            if inspect.isabstract(factory):
                missing = ", ".join(sorted(factory.__abstractmethods__))
                raise TypeError(f"plugin {name!r} ({factory.__name__}) does not implement {missing}")
        elif not callable(factory):
            raise TypeError(f"plugin {name!r} is a {type(factory).__name__}, not a class or factory")
        kind = getattr(factory, "kind", "tool")
        description = getattr(factory, "description", "") or ""
        self._plugins[name] = PluginInfo(
            name=name, factory=factory, kind=kind, version=version, description=description, builtin=builtin
        )

    def get(self, name: str) -> PluginInfo:
        info = self._plugins.get(name)
        if info is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise NotFound(f"No plugin named '{name}' (installed: {known}).", code="plugin_not_found")
        return info

    def create(
        self,
        name: str,
        source: str,
        *,
        revision: str | None = None,
        quantization: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> LLMPlugin:
        """An LLMPlugin instance for one model source."""
        info = self.get(name)
        if info.factory is None:
            raise Unprocessable(f"Plugin '{name}' is installed but broken: {info.error}", code="plugin_error")
        if info.kind != "llm":
            raise Unprocessable(f"Plugin '{name}' is a tool, not a language model.", code="not_an_llm_plugin")
        plugin = info.factory(source, revision=revision, quantization=quantization, options=options or {})
        if not isinstance(plugin, LLMPlugin):
            raise Unprocessable(f"Plugin '{name}' is a tool, not a language model.", code="not_an_llm_plugin")
        return plugin

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def list(self) -> list[dict[str, Any]]:
        return [self._plugins[name].to_dict() for name in self.names()]


def init_app(app: Flask) -> None:
    """Discover plugins once per app; tests (app.testing) see only the built-ins unless configured otherwise."""
    registry = PluginRegistry()
    registry.discover(builtin_only=bool(app.config.get("PROMPTYARD_BUILTIN_PLUGINS_ONLY", app.testing)))
    app.extensions["promptyard.plugins"] = registry


def get_registry() -> PluginRegistry:
    """The current app's registry."""
    # Imported here so that plugin modules and the registry itself stay free of Flask at import time.
    from flask import current_app

    return current_app.extensions["promptyard.plugins"]
