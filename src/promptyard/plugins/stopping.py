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


class RowFinish(StoppingCriteria):
    """For a batch: ends each row at its end-of-sequence token or stop sequence, and remembers how many tokens each
    row had generated then (`lengths`, None for a row still going): finished rows are padded while the others run,
    and the padding (often the end-of-sequence token itself) must not count as output."""

    def __init__(self, tokenizer, stops: list[str], start: int, eos_ids: set[int], rows: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.start = start
        self.eos_ids = sorted(eos_ids)
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 8
        self.done: torch.Tensor | None = None
        self.lengths: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        # One tensor operation for the end-of-sequence check: a Python loop over the rows would cost each step
        # more than the tiny models' forward pass.
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        ended = torch.isin(input_ids[:, -1], torch.tensor(self.eos_ids, device=input_ids.device)) \
            if self.eos_ids else torch.zeros_like(self.done)
        if self.stops:
            for index in (~self.done & ~ended).nonzero().flatten().tolist():
                text = self.tokenizer.decode(input_ids[index, self.start:][-self.window:], skip_special_tokens=True)
                ended[index] = any(stop in text for stop in self.stops)
        for index in (ended & ~self.done).nonzero().flatten().tolist():
            self.lengths[index] = input_ids.shape[1] - self.start
        self.done |= ended
        return self.done.clone()
