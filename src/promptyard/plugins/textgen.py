"""Text generation pieces shared by backends (no torch here): chat formatting, stop sequences, a held-back stream."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from promptyard.errors import Unprocessable
from promptyard.plugins.base import PromptInput, check_prompt

# Named prompt formats for models whose tokenizer has no chat template (Jinja, like chat templates).
PROMPT_FORMATS = {
    # WhiteRabbitNeo and other Vicuna-style models: "SYSTEM: ...\nUSER: ...\nASSISTANT:".
    "system-user-assistant": (
        "{% for message in messages %}{{ message['role'] | upper }}: {{ message['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
}


def fit_to_context(model: str, tokens_in: int, max_new_tokens: int, context_length: int | None, *,
                   output_shares_context: bool) -> int:
    """max_new_tokens cut to what the context leaves; a 422 when the input alone does not fit.

    A causal model reads the input and its own output in one context: the input must leave room for at least one new
    token, and the output gets what remains. An encoder-decoder's limit is its encoder's: only the input counts.
    """
    if context_length is None:
        return max_new_tokens
    if output_shares_context and tokens_in >= context_length:
        problem = (f"model '{model}' reads at most {context_length} tokens of input and output together, which "
                   f"leaves no room for a new token")
    elif not output_shares_context and tokens_in > context_length:
        problem = f"model '{model}' reads at most {context_length} tokens of input"
    else:
        return min(max_new_tokens, context_length - tokens_in) if output_shares_context else max_new_tokens
    raise Unprocessable(f"The input takes {tokens_in} tokens and {problem}; shorten the input.",
                        code="context_length_exceeded",
                        details={"tokens_in": tokens_in, "context_length": context_length})


# Marks where a begun assistant message ends once a chat template has written it (EvalPlus's way to prefill).
CONTINUE_MARK = "-[[]]-promptyard-continues-here-[[]]-"


def continues_answer(messages: list[dict[str, str]]) -> bool:
    """A chat ending with an assistant message asks the model to continue that message (a prefill)."""
    return bool(messages) and messages[-1].get("role") == "assistant"


def render_chat(messages: list[dict[str, str]], render: Callable[[list[dict[str, str]], bool], str]) -> str:
    """A chat through a template (`render(messages, add_generation_prompt)`): the template's generation prompt after
    the messages, or, when the chat ends with an assistant message, the text up to where that message's content ends,
    for the model to continue it."""
    if not continues_answer(messages):
        return render(messages, True)
    marked = messages[:-1] + [{**messages[-1], "content": messages[-1]["content"] + CONTINUE_MARK}]
    text = render(marked, False)
    if CONTINUE_MARK not in text:
        raise Unprocessable("The model's chat template leaves out the assistant message the chat ends with, so "
                            "the model cannot continue it.", code="chat_template_error")
    return text[:text.index(CONTINUE_MARK)]


def plain_chat(messages: list[dict[str, str]]) -> str:
    """A chat as plain text when the model has no chat format: one `role: content` line each, then `assistant:`
    (or the begun assistant line the chat ends with)."""
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines if continues_answer(messages) else lines + ["assistant:"])


def prompt_to_text(prompt: PromptInput, tokenizer, prompt_format: str | None) -> tuple[str, bool]:
    """The text to encode and whether a chat template made it: the tokenizer's, else the prompt format's."""
    if isinstance(prompt, str):
        return prompt, False
    check_prompt(prompt)
    template = getattr(tokenizer, "chat_template", None) or PROMPT_FORMATS.get(prompt_format or "", prompt_format)
    if template:
        try:
            text = render_chat(prompt, lambda messages, generation_prompt: tokenizer.apply_chat_template(
                messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt))
        except Unprocessable:
            raise
        except Exception as exc:  # noqa: BLE001 - templates raise anything (jinja errors, raise_exception(...))
            raise Unprocessable(f"The model's chat template refused these messages: {exc}",
                                code="chat_template_error") from exc
        return text, True
    return plain_chat(prompt), False


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text before the earliest stop sequence, and whether one was found."""
    positions = [text.find(stop) for stop in stops if stop]
    found = [p for p in positions if p >= 0]
    if not found:
        return text, False
    return text[: min(found)], True


class StopBuffer:
    """Holds back streamed text that could be the start of a stop sequence, so no stop text is ever emitted."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add generated text; returns what can be emitted now."""
        if self.stopped:
            return ""
        self.text += piece
        cut, found = cut_at_stop(self.text, self.stops)
        if found:
            # A longer stop that began earlier may still complete (";\n;" around a found "\n"): it would be the
            # first stop, so wait for it to complete or fail, emitting only what comes before it.
            pending = self._partial_stop_start(before=len(cut))
            if pending is not None:
                return self._emit(pending)
            self.stopped = True
            self.text = cut
            return self._emit(len(cut))
        return self._emit(max(self.emitted, len(self.text) - self.hold))

    def stream(self, pieces: Iterable[str]) -> Iterator[str]:
        """The text to emit as `pieces` arrive (never empty), up to the first stop sequence, then the rest held back."""
        for piece in pieces:
            delta = self.feed(piece)
            if delta:
                yield delta
            if self.stopped:
                break
        rest = self.flush()
        if rest:
            yield rest

    def flush(self) -> str:
        """Everything not emitted yet, cut at the first stop (generation ended)."""
        if not self.stopped:
            self.text, self.stopped = cut_at_stop(self.text, self.stops)
        return self._emit(len(self.text))

    def _partial_stop_start(self, before: int) -> int | None:
        """The first position before `before` where the text so far ends in an unfinished stop, if any."""
        for start in range(max(0, len(self.text) - self.hold), before):
            tail = self.text[start:]
            if any(len(stop) > len(tail) and stop.startswith(tail) for stop in self.stops):
                return start
        return None

    def _emit(self, upto: int) -> str:
        piece = self.text[self.emitted:upto]
        self.emitted = max(self.emitted, upto)
        return piece
