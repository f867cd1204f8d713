"""How a transformers model is placed: device, dtype and bitsandbytes quantization (never a silent fallback)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from promptyard.errors import Unprocessable

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")


def choose_device_and_dtype(options: dict[str, Any]) -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 (fp16 where bf16 is missing) when present, else CPU in fp32; options override."""
    import torch

    requested = options.get("device")
    try:
        device = torch.device(requested) if requested else None
    except RuntimeError as exc:
        raise Unprocessable(f"Unknown device '{requested}'.", code="invalid_device") from exc
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Unprocessable("The model asks for a CUDA device and this machine has none.", code="invalid_device")
    dtype_name = options.get("dtype")
    if dtype_name:
        if dtype_name not in DTYPES:
            raise Unprocessable(f"Unknown dtype '{dtype_name}'; use one of: {', '.join(DTYPES)}.",
                                code="invalid_dtype")
        return device, getattr(torch, dtype_name)
    if device.type == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


def quantization_config_for(bits: str | None, device: torch.device, dtype: torch.dtype):
    """A BitsAndBytesConfig, or a clear error when this machine cannot quantize (never a silent fallback)."""
    if bits is None:
        return None
    if device.type != "cuda":
        raise Unprocessable(
            f"{bits} quantization needs a CUDA GPU with bitsandbytes, and this machine has no CUDA GPU. "
            f"Run this model on a GPU machine, serve it with an openai-compatible server, or register it "
            f"without quantization if its full-precision weights fit in memory.",
            code="quantization_unavailable", details={"quantization": bits, "device": device.type},
        )
    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise Unprocessable(
            f"{bits} quantization needs the {' and '.join(missing)} package(s): "
            f"pip install 'promptyard[gpu]'.",
            code="quantization_unavailable", details={"quantization": bits, "missing": missing},
        )
    from transformers import BitsAndBytesConfig

    if bits == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    return BitsAndBytesConfig(load_in_8bit=True)
