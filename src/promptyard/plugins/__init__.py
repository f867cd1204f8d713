"""Model plugins: the AgentTool / LLMPlugin interface, the registry and the built-in backends."""

from promptyard.plugins.base import AgentTool, Generation, GenerationParams, LLMPlugin, StreamResult

__all__ = ["AgentTool", "Generation", "GenerationParams", "LLMPlugin", "StreamResult"]
