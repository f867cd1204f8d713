"""promptyard: a self-hostable workbench for code LLMs."""

from promptyard.app import create_app

__version__ = "0.1.0"
__all__ = ["create_app", "__version__"]
