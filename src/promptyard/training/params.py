"""Training hyperparameters, named as PEFT's LoraConfig and TRL's trainer configs name them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptyard.errors import Unprocessable

METHODS = ("sft", "kto", "dpo")


class TrainingParams(BaseModel):
    """LoRA and trainer settings with defaults that suit a small code model; unknown names are refused."""

    model_config = ConfigDict(extra="forbid")

    # PEFT LoraConfig
    r: int = Field(16, ge=1, le=1024, description="LoRA rank: size of the low-rank update matrices.")
    lora_alpha: int = Field(32, ge=1, le=4096, description="LoRA scaling numerator (the update is scaled by alpha/r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input during training.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: names (e.g. q_proj, v_proj, up_proj, down_proj) or "
                                  "'all-linear' (every linear layer but the output head: attention and MLP).")
    # TRL / transformers TrainingArguments
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Peak learning rate of AdamW.")
    num_train_epochs: float = Field(3.0, gt=0.0, le=1000.0, description="Passes over the data (unless max_steps).")
    max_steps: int = Field(-1, ge=-1, le=1_000_000, description="Optimizer steps in all; -1 means use the epochs.")
    per_device_train_batch_size: int = Field(4, ge=1, le=1024, description="Rows per step on each device.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Steps whose gradients add up per update.")
    max_length: int = Field(1024, ge=8, le=131072, description="Longest row in tokens (longer ones are cut).")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="How the learning rate changes over training.")
    warmup_steps: int = Field(0, ge=0, le=100_000, description="Steps of linear warm-up.")
    beta: float = Field(0.1, gt=0.0, le=100.0, description="KTO/DPO: strength of the pull toward the reference.")
    save_steps: int = Field(50, ge=1, le=1_000_000, description="Save a checkpoint every N steps (for resume).")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (data order, adapter init, dropout).")
    # promptyard
    quantization: Literal["4bit"] | None = Field(
        None, description="QLoRA: load the base in 4-bit (nf4) on a CUDA GPU with bitsandbytes.")
    merge: bool = Field(False, description="Serve the new model with the adapter merged into the base weights.")


def parse_params(raw: dict[str, Any] | None) -> TrainingParams:
    """TrainingParams from a dict, or a 422 naming the bad hyperparameter."""
    try:
        return TrainingParams.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        problem = "is not a known hyperparameter" if first["type"] == "extra_forbidden" else first["msg"]
        raise Unprocessable(f"Hyperparameter '{where}' {problem}.", code="invalid_training_params",
                            details={"field": f"params.{where}"}) from None


def lora_config(params: TrainingParams):
    """PEFT's LoraConfig for a causal language model."""
    from peft import LoraConfig

    return LoraConfig(r=params.r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=params.target_modules, task_type="CAUSAL_LM")


def trainer_arguments(params: TrainingParams, output_dir: str, *, use_cpu: bool) -> dict[str, Any]:
    """The TrainingArguments all three TRL configs share."""
    return {
        "output_dir": output_dir,
        "learning_rate": params.learning_rate,
        "num_train_epochs": params.num_train_epochs,
        "max_steps": params.max_steps,
        "per_device_train_batch_size": params.per_device_train_batch_size,
        "gradient_accumulation_steps": params.gradient_accumulation_steps,
        "lr_scheduler_type": params.lr_scheduler_type,
        "warmup_steps": params.warmup_steps,
        "seed": params.seed,
        "save_strategy": "steps",
        "save_steps": params.save_steps,
        "save_total_limit": 2,
        "logging_steps": 1,
        "report_to": [],
        "use_cpu": use_cpu,
        "disable_tqdm": True,
        "log_level": "error",
        # Rows carry prompt/completion (or chosen/rejected) columns TRL reads itself.
        "remove_unused_columns": False,
    }
