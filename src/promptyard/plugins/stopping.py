"""Stopping criteria for transformers generation: stop sequences and cancellation (imports torch)."""

from __future__ import annotations

import threading

import torch
from transformers import StoppingCriteria


class StopOnText(StoppingCriteria):
    """Ends generation once the generated text (after `prompt_length` tokens) contains a stop sequence."""

    def __init__(self, tokenizer, stops: list[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_length = prompt_length
        # A stop of n characters spans at most 4n byte-level tokens; a margin covers merges across its edges.
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 8

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = []
        for row in input_ids:
            tail = row[self.prompt_length:][-self.window:]
            text = self.tokenizer.decode(tail, skip_special_tokens=True)
            done.append(any(stop in text for stop in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopOnEvent(StoppingCriteria):
    """Ends generation when an event is set (the consumer of a stream went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
