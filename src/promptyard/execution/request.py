"""What a caller asks the pipeline for: one execution request, as plain values (its own module so that the
pipeline and its checks both import it, neither the other)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecutionRequest:
    model: str
    prompt: str | None = None          # library prompt name
    version: int | None = None
    label: str | None = None
    experiment: str | None = None      # with subject: the experiment's sticky arm picks the version
    subject: str | None = None
    variables: dict = field(default_factory=dict)
    input: str | list[dict] | None = None   # raw input (text or chat messages) when no prompt
    params: dict = field(default_factory=dict)   # over the prompt version's params, over the model's params
    cache: bool | str = True           # True: deterministic requests only; "always": sampled too; False: off
    source: str = "api"                # api | v1 | eval | cli | ui
