"""promptyard: a self-hostable workbench for code LLMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptyard.app import create_app

__version__ = "0.1.0"
__all__ = ["create_app", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that plugins and the evaluation sandbox can import promptyard.* without Flask.
    if name == "create_app":
        from promptyard.app import create_app

        return create_app
    raise AttributeError(f"module 'promptyard' has no attribute '{name}'")
