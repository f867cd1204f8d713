"""The training job: LoRA on a registered transformers model with TRL's SFT, KTO or DPO trainer.

Progress and the loss of every step go to the training's row as they happen; a cancel is noticed at the next
step (a checkpoint is saved first, so `resume` continues from it); a job started again resumes from the last
checkpoint in the training's folder.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from promptyard.db import db, utcnow
from promptyard.db.training_models import Training
from promptyard.training.params import TrainingParams, lora_config, trainer_arguments

ONE_AT_A_TIME = threading.Lock()


class _Progress:
    """A transformers TrainerCallback (built lazily, transformers is imported only here) writing to the row."""

    def __init__(self, training_id: int) -> None:
        self.training_id = training_id
        self.cancelled = False

    def callback(self):
        from transformers import TrainerCallback

        progress = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                row = _row(progress.training_id)
                # A resumed run repeats nothing before its checkpoint; losses logged after it are logged again.
                row.losses = [item for item in row.losses or [] if item["step"] <= state.global_step]
                row.step, row.total_steps = state.global_step, state.max_steps
                if state.global_step:
                    row.resumed_from_step = state.global_step
                db.session.commit()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    row = _row(progress.training_id)
                    row.losses = [*(row.losses or []), {"step": state.global_step, "loss": float(logs["loss"])}]
                    row.step = state.global_step
                    db.session.commit()

            def on_step_end(self, args, state, control, **kwargs):
                row = _row(progress.training_id)
                row.step = state.global_step
                db.session.commit()
                if _cancel_requested(progress.training_id):
                    progress.cancelled = True
                    control.should_save = True  # resume continues from here
                    control.should_training_stop = True

        return Callback()


def _row(training_id: int) -> Training:
    return db.session.get(Training, training_id)


def _cancel_requested(training_id: int) -> bool:
    db.session.commit()  # end the read snapshot: see a cancel written by another request since
    return bool(db.session.scalar(select(Training.cancel_requested).where(Training.id == training_id)))


def load_base(folder: str, options: dict[str, Any], quantization: str | None):
    """The base model and tokenizer for training (4-bit on CUDA for QLoRA, through the backend's placement)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptyard.plugins.hf_loading import choose_device_and_dtype, quantization_config_for

    device, dtype = choose_device_and_dtype(options)
    trust = options.get("trust_remote_code") is True
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust, "dtype": dtype}
    quantization_config = quantization_config_for(quantization, device, dtype)
    if quantization_config is not None:
        kwargs.update(quantization_config=quantization_config, device_map={"": device.index or 0})
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if quantization_config is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    else:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=trust)
    if tokenizer.pad_token_id is None:  # batches need padding; the EOS token is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def sft_features(rows: list[dict[str, Any]], tokenizer, prompt_format: str | None, max_length: int) -> list[dict]:
    """Token ids of prompt then completion + EOS, each part tokenized alone, with a mask on the completion.

    TRL would tokenize prompt + completion as one text, and byte-level BPE merges across the seam ("\\n" +
    "    " becomes one token), so the model would learn a token sequence it never sees when it is served: the
    backend tokenizes the prompt by itself. This is exactly what the backend feeds it.
    """
    from promptyard.plugins.textgen import prompt_to_text

    features = []
    for row in rows:
        text, templated = prompt_to_text(row["prompt"], tokenizer, prompt_format)
        prompt_ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
        completion = row["completion"]
        answer = completion[0]["content"] if isinstance(completion, list) else completion
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[:max_length]
        mask = ([0] * len(prompt_ids) + [1] * len(answer_ids))[:max_length]
        features.append({"input_ids": ids, "completion_mask": mask})
    return features


def build_trainer(method: str, model, tokenizer, rows: list[dict], params: TrainingParams, output_dir: str,
                  use_cpu: bool, prompt_format: str | None, callbacks: list):
    """TRL's trainer for the method, with a fresh LoRA adapter on the model."""
    from datasets import Dataset

    args = trainer_arguments(params, output_dir, use_cpu=use_cpu)
    peft_config = lora_config(params)
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list(sft_features(rows, tokenizer, prompt_format, params.max_length))
        return SFTTrainer(model=model, args=SFTConfig(**args, max_length=params.max_length),
                          train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                          callbacks=callbacks)
    dataset = Dataset.from_list(rows)
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer(model=model, args=KTOConfig(**args, beta=params.beta, max_length=params.max_length),
                          train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                          callbacks=callbacks)
    from trl import DPOConfig, DPOTrainer

    return DPOTrainer(model=model, args=DPOConfig(**args, beta=params.beta, max_length=params.max_length),
                      train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                      callbacks=callbacks)


def train(training: Training, folder: str, base_options: dict[str, Any], quantization: str | None) -> bool:
    """Run (or resume) the training in its folder; True when it ran to the end, False when it was cancelled."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    params = TrainingParams.model_validate(training.params)
    out = Path(training.output_dir)
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines() if line.strip()]
    model, tokenizer, device = load_base(folder, base_options, quantization)
    progress = _Progress(training.id)
    checkpoints = out / "checkpoints"
    trainer = build_trainer(training.method, model, tokenizer, rows, params, str(checkpoints),
                            device.type == "cpu", base_options.get("prompt_format"), [progress.callback()])
    # Progress goes to the database; the default printer would write every step's logs to the server's stdout.
    trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    if progress.cancelled:
        return False
    adapter = out / "adapter"
    trainer.model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    return True


def finished(training: Training, status: str, error: str | None = None) -> None:
    training.status, training.error, training.finished_at = status, error, utcnow()
    db.session.commit()
