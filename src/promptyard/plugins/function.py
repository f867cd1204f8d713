"""A plugin backed by a plain function `(prompt, params) -> text`: the fake at the model boundary for tests."""

from __future__ import annotations

import re
import time
from typing import Callable, Generator

from promptyard.plugins.base import Generation, GenerationParams, LLMPlugin, PromptInput

TextFunction = Callable[[PromptInput, GenerationParams], str]


def prompt_text(prompt: PromptInput) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)


class FunctionPlugin(LLMPlugin):
    """Wraps a function; tokens are whitespace-separated words; `delay` seconds between streamed words."""

    name = "function"
    description = "Test backend: a Python function turns the prompt into text."

    def __init__(self, fn: TextFunction, *, delay: float = 0.0, source: str = "function") -> None:
        super().__init__(source)
        self.fn = fn
        self.delay = delay

    def generate(self, prompt: PromptInput, params: GenerationParams) -> Generation:
        started = time.perf_counter()
        text = self.fn(prompt, params)
        return Generation(
            text=text,
            tokens_in=len(prompt_text(prompt).split()),
            tokens_out=len(text.split()),
            timings={"generate": (time.perf_counter() - started) * 1000},
        )

    def stream(self, prompt: PromptInput, params: GenerationParams) -> Generator[str, None, Generation]:
        started = time.perf_counter()
        text = self.fn(prompt, params)
        for piece in re.findall(r"\S+\s*|\s+", text):
            if self.delay:
                time.sleep(self.delay)
            yield piece
        return Generation(
            text=text,
            tokens_in=len(prompt_text(prompt).split()),
            tokens_out=len(text.split()),
            timings={"generate": (time.perf_counter() - started) * 1000},
        )
