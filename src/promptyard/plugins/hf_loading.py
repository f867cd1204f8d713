"""How a transformers model is placed: device, dtype and bitsandbytes quantization (never a silent fallback),
and how much memory it will take there, worked out from its files before loading."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptyard.errors import Unprocessable

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")
# Bytes a quantized weight takes; the few layers bitsandbytes leaves alone (embeddings, norms) are not told apart.
QUANTIZED_BYTES_PER_PARAMETER = {"8bit": 1.0, "4bit": 0.5}
# The weights transformers loads, by preference: an index of shards, else the single file (a folder may hold other
# weight files too, such as a `consolidated.safetensors` for another runtime, which are not loaded).
WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


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


def bytes_per_parameter(bits: str | None, dtype: torch.dtype) -> float:
    return QUANTIZED_BYTES_PER_PARAMETER[bits] if bits else float(dtype.itemsize)


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers would load from the folder."""
    for index_name, single_name in WEIGHT_LAYOUTS:
        index = folder / index_name
        if index.is_file():
            return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        if (folder / single_name).is_file():
            return [folder / single_name]
    return []


def safetensors_parameter_count(path: Path) -> int:
    """Parameters in a safetensors file, read from its header (an 8-byte length, then JSON describing each tensor)."""
    with path.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    return sum(math.prod(tensor["shape"]) for name, tensor in header.items() if name != "__metadata__")


def estimated_weight_bytes(folder: Path, bytes_per_param: float) -> int:
    """Memory the weights will take once loaded: safetensors parameters at `bytes_per_param` each (the dtype they
    load in, or quantized); a pickled checkpoint, whose tensors cannot be read cheaply, by its size on disk."""
    total = 0.0
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            total += safetensors_parameter_count(path) * bytes_per_param
        else:
            total += path.stat().st_size
    return int(total)


def apply_adapter(model, options: dict[str, Any]):
    """The model with the PEFT (LoRA) adapter of options["adapter"] on top, merged into the weights when
    options["merge_adapter"] is true; the model itself when there is no adapter."""
    adapter = options.get("adapter")
    if not adapter:
        return model
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise Unprocessable(f"There is no PEFT adapter (adapter_config.json) in '{adapter}'.",
                            code="adapter_not_found", details={"adapter": str(adapter)})
    if importlib.util.find_spec("peft") is None:
        raise Unprocessable("This model is a base with a LoRA adapter, which needs the peft package: "
                            "pip install 'promptyard[train]'.", code="adapter_unavailable")
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return model.merge_and_unload() if options.get("merge_adapter") is True else model
