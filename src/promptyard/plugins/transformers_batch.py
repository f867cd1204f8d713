"""Batched generation for the transformers backend: many prompts and many samples per `model.generate` call.

Causal models are padded on the left (every row's new tokens start at the same column), seq2seq models on the
right (the encoder reads with the attention mask). Samples of one prompt use `num_return_sequences`; prompts with
the same params share a batch (greedy ones too: a greedy run over many tasks is batched across tasks). Each row
ends on its own (end-of-sequence token or stop sequence) and gets its own text, token counts and finish reason.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptyard.errors import PromptyardError, Unavailable
from promptyard.plugins.base import BatchItem, BatchResult, Generation, GenerationParams
from promptyard.plugins.textgen import cut_at_stop, fit_to_context, prompt_to_text

if TYPE_CHECKING:
    from promptyard.plugins.transformers_backend import TransformersPlugin

# Rows (sequences) in one generate call unless the model's options say otherwise (`max_batch_size`).
DEFAULT_MAX_BATCH_SIZE = 32


@dataclass
class _Member:
    """One prompt's share of a batch: which item, its text, how many samples of it."""

    item: int
    text: str
    length: int
    count: int
    first_sample: int = 0


def max_batch_size(plugin: TransformersPlugin) -> int:
    value = plugin.options.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
    return value if isinstance(value, int) and value >= 1 else DEFAULT_MAX_BATCH_SIZE


def generate_batch(plugin: TransformersPlugin, items: list[BatchItem]) -> BatchResult:
    """Every item's n samples, generated in as few calls as the batch size allows; failures stay per sample."""
    results: BatchResult = [[] for _ in items]
    slots: list[list[Any]] = [[None] * item.n for item in items]
    model, load_ms = plugin._ready()
    tokenizer = plugin.tokenizer
    if tokenizer.pad_token is None:  # GPT-2 and friends have none; padding rows with end-of-sequence is the norm
        tokenizer.pad_token = tokenizer.eos_token
    groups: dict[tuple[str, bool], list[_Member]] = defaultdict(list)
    params_of: dict[tuple[str, bool], GenerationParams] = {}
    for index, item in enumerate(items):
        try:
            text, templated = prompt_to_text(item.prompt, tokenizer, plugin.options.get("prompt_format"))
            length = len(tokenizer(text, add_special_tokens=not templated)["input_ids"])
            fitted = fit_to_context(plugin.source, length, item.params.max_new_tokens, plugin.context_length(),
                                    output_shares_context=plugin.output_shares_context())
        except PromptyardError as exc:
            slots[index] = [exc] * item.n
            continue
        params = item.params.model_copy(update={"max_new_tokens": fitted})
        key = (params.model_dump_json(), templated)
        params_of[key] = params
        groups[key].append(_Member(index, text, length, item.n))
    limit = max_batch_size(plugin)
    for key, members in groups.items():
        for chunk in _chunks(members, limit):
            params, templated = params_of[key], key[1]
            future = plugin._generation_thread.submit(
                lambda chunk=chunk, params=params, templated=templated: _run(plugin, model, chunk, params, templated))
            try:
                generations = future.result()
            except Exception as exc:  # noqa: BLE001 - the whole call failed: each of its samples says why
                error = exc if isinstance(exc, PromptyardError) else Unavailable(
                    f"Generation failed: {exc}", code="generation_failed")
                generations = [[error] * member.count for member in chunk]
            for member, samples in zip(chunk, generations):
                for offset, sample in enumerate(samples):
                    if isinstance(sample, Generation):
                        sample.timings["load"] = load_ms
                    slots[member.item][member.first_sample + offset] = sample
    for index, samples in enumerate(slots):
        results[index] = samples
    return results


def _chunks(members: list[_Member], limit: int) -> list[list[_Member]]:
    """Batches of at most `limit` rows; prompts of like length together (less padding); an item with more samples
    than a batch holds is split across batches."""
    pieces: list[_Member] = []
    for member in sorted(members, key=lambda m: m.length):
        for start in range(0, member.count, limit):
            pieces.append(_Member(member.item, member.text, member.length, min(limit, member.count - start), start))
    chunks: list[list[_Member]] = []
    rows = 0
    for piece in pieces:
        if not chunks or rows + piece.count > limit:
            chunks.append([])
            rows = 0
        chunks[-1].append(piece)
        rows += piece.count
    return chunks


def _run(plugin: TransformersPlugin, model, chunk: list[_Member], params: GenerationParams,
         templated: bool) -> list[list[Generation]]:
    """One generate call on the model's thread; returns each member's samples."""
    import torch
    from transformers import StoppingCriteriaList

    from promptyard.plugins.stopping import RowFinish

    tokenizer = plugin.tokenizer
    causal = not plugin.is_encoder_decoder
    counts = [member.count for member in chunk]
    uniform = len(set(counts)) == 1
    # Samples of one prompt: num_return_sequences when every prompt here wants as many; else the rows are repeated.
    texts = [m.text for m in chunk] if uniform else [m.text for m in chunk for _ in range(m.count)]
    inputs = dict(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated,
                            padding_side="left" if causal else "right"))
    inputs.pop("token_type_ids", None)
    inputs = {name: value.to(plugin.device) for name, value in inputs.items()}
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = plugin._generation_kwargs(model, params, prompt_length)
    kwargs["max_new_tokens"] = params.max_new_tokens  # fitted per prompt before batching
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    if uniform and counts[0] > 1:
        kwargs["num_return_sequences"] = counts[0]
    rows = sum(counts)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    start = 1 if not causal else prompt_length  # seq2seq output opens with the decoder start token
    finish = RowFinish(tokenizer, params.stop, start, eos_ids, rows)
    started = time.perf_counter()
    plugin._seed(params)
    try:
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs, stopping_criteria=StoppingCriteriaList([finish]))
    except (RuntimeError, ValueError) as exc:
        raise Unavailable(f"Generation failed: {exc}", code="generation_failed") from exc
    batch_ms = (time.perf_counter() - started) * 1000
    prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
    per_row_prompt = [prompt_tokens[i] for i, m in enumerate(chunk) for _ in range(m.count)] if uniform \
        else prompt_tokens
    generations: list[list[Generation]] = []
    row = 0
    for member in chunk:
        samples = []
        for _ in range(member.count):
            new = output[row][start:]
            length = finish.lengths[row]
            new = new[:length] if length is not None else new
            text, stopped = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), params.stop)
            ended = stopped or (len(new) and int(new[-1]) in eos_ids)
            samples.append(Generation(
                text=text, tokens_in=int(per_row_prompt[row]), tokens_out=len(new),
                finish_reason="stop" if ended or len(new) < params.max_new_tokens else "length",
                # "generate": this row's share of the call (what cost is worked out on); "batch": the whole call.
                timings={"generate": batch_ms / rows, "batch": batch_ms, "batch_rows": float(rows)},
            ))
            row += 1
        generations.append(samples)
    return generations
