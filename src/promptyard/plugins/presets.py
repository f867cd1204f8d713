"""Preset models (data only): registered on first `up` with status `not_downloaded` until their weights exist.

Memory needs are for the weights alone; generation adds the KV cache (grows with context and batch).
`gpu_hour` is a default price per GPU-hour (an on-demand cloud GPU of the class the model needs); edit it
to your own cost. The models service (`promptyard.models.service.register_presets`) turns these into rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One preset model: what the models service registers, plus the facts a person needs to choose it."""

    name: str
    source: str  # Hugging Face hub id
    description: str
    memory: str  # human-readable memory needs
    plugin: str = "transformers"
    architecture: str = "causal"  # causal | seq2seq (the plugin reads it from the config; documented here)
    quantization: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pricing: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keyword arguments for `register_model`, with is_preset set."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "source": self.source,
            "quantization": self.quantization,
            "params": dict(self.params),
            "pricing": dict(self.pricing),
            "options": dict(self.options),
            "revision": self.revision,
            "description": f"{self.description} Memory: {self.memory}",
            "is_preset": True,
        }


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="whiterabbitneo-33b",
            source="WhiteRabbitNeo/WhiteRabbitNeo-33B-v1.5",
            description=(
                "WhiteRabbitNeo 33B v1.5 (DeepSeek-Coder based), a code and offensive/defensive security model. "
                "Loaded in 4-bit NF4 by default (needs a CUDA GPU and bitsandbytes). Its prompt format is "
                "'SYSTEM: ...\\nUSER: ...\\nASSISTANT:', applied to chats."
            ),
            memory="about 20 GB of GPU memory in 4-bit (67 GB in bf16); a 24 GB GPU fits short contexts.",
            quantization="4bit",
            params={"max_new_tokens": 512, "temperature": 0.5, "top_p": 0.9, "do_sample": True},
            pricing={"gpu_hour": 1.10},
            options={"prompt_format": "system-user-assistant"},
        ),
        Preset(
            name="codet5p-220m",
            source="Salesforce/codet5p-220m",
            architecture="seq2seq",
            description=(
                "CodeT5+ 220M, an encoder-decoder code model for span completion and code-to-code tasks "
                "(not an instruction follower). Runs on a CPU."
            ),
            memory="about 0.9 GB in fp32 on a CPU.",
            params={"max_new_tokens": 128},
            pricing={"gpu_hour": 0.0},
        ),
        Preset(
            name="codet5p-770m-py",
            source="Salesforce/codet5p-770m-py",
            architecture="seq2seq",
            description="CodeT5+ 770M further trained on Python: completes Python functions. Runs on a CPU.",
            memory="about 3 GB in fp32 on a CPU, 1.5 GB in bf16 on a GPU.",
            params={"max_new_tokens": 256},
            pricing={"gpu_hour": 0.0},
        ),
        Preset(
            name="instructcodet5p-16b",
            source="Salesforce/instructcodet5p-16b",
            architecture="seq2seq",
            description=(
                "InstructCodeT5+ 16B, an instruction-tuned encoder-decoder code model. Its repository ships its "
                "own model code, so it runs only with trust_remote_code, an explicit opt-in: review the code "
                "on the hub, then set options.trust_remote_code to true on this model."
            ),
            memory="about 32 GB of GPU memory in fp16 (a 40 GB or larger GPU).",
            params={"max_new_tokens": 256},
            pricing={"gpu_hour": 2.50},
            options={"trust_remote_code": False},
        ),
        Preset(
            name="qwen2.5-coder-0.5b-instruct",
            source="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            description=(
                "Qwen2.5-Coder 0.5B Instruct, a small chat code model that answers on a laptop CPU "
                "(uses its tokenizer's chat template)."
            ),
            memory="about 2 GB in fp32 on a CPU (1 GB in bf16 on a GPU).",
            params={"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.8, "do_sample": False},
            pricing={"gpu_hour": 0.0},
        ),
    )
}
