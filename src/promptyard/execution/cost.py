"""What one execution cost, from the model's pricing: per 1K tokens (API backends) or per GPU-hour."""

from __future__ import annotations

from typing import Any


def execution_cost(pricing: dict[str, Any] | None, tokens_in: int, tokens_out: int, generate_ms: float) -> float:
    """Token prices when the model has them, plus GPU time at `gpu_hour` per hour of measured generation."""
    pricing = pricing or {}
    cost = tokens_in / 1000 * float(pricing.get("input_per_1k", 0) or 0)
    cost += tokens_out / 1000 * float(pricing.get("output_per_1k", 0) or 0)
    cost += float(pricing.get("gpu_hour", 0) or 0) * max(generate_ms, 0.0) / 3_600_000
    return round(cost, 10)
