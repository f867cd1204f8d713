"""LoRA SFT throughput on the tiny trainable GPT-2: raw TRL `SFTTrainer.train()` vs a promptyard training job.

Run with `make bench-training` (or `.venv/bin/python bench/bench_training.py --help`). Both train the same LoRA
adapter (r=16, all linear layers) on the same pre-tokenized rows with the same steps and batch size. promptyard's
figure is its whole job, timed end to end: loading the base, the trainer, writing progress and the loss of every
step to its database, checkpoints every --save-steps, saving the adapter and registering the new model. Rounds
alternate raw and promptyard; the table gives the median and the range over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))

NAMES = ["add", "sub", "mul", "div", "mod", "pow", "neg", "inc", "dec", "half", "double", "square", "cube", "avg",
         "first", "last"]


def rows() -> list[dict]:
    """Short prompt/completion pairs: a signature and a one-line body."""
    ops = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "mod": "a % b", "pow": "a ** b",
           "neg": "-a", "inc": "a + 1", "dec": "a - 1", "half": "a / 2", "double": "a * 2", "square": "a * a",
           "cube": "a * a * a", "avg": "(a + b) / 2", "first": "a", "last": "b"}
    return [{"prompt": f"def {name}(a, b):\n", "completion": f"    return {ops[name]}\n"} for name in NAMES]


def raw_train(model_dir: Path, out: Path, steps: int, batch: int) -> tuple[float, int]:
    """Seconds in SFTTrainer.train() and the tokens trained on, with the features promptyard feeds TRL."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from promptyard.training.trainer import sft_features

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    features = sft_features(rows(), tokenizer, None, 64)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-2,
                       logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                       log_level="error", max_length=64, remove_unused_columns=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(features),
                         processing_class=tokenizer,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    # Each step takes `batch` rows in turn (the rows divide evenly into batches), so the tokens are known exactly.
    mean_length = sum(len(f["input_ids"]) for f in features) / len(features)
    return elapsed, round(mean_length * batch * steps)


def promptyard_train(app, model_dir: Path, index: int, steps: int, batch: int, save_steps: int) -> float:
    """Seconds for a whole promptyard training job (run in this process, as `promptyard train start` does)."""
    import json

    from promptyard.training import runs

    jsonl = "".join(json.dumps(row) + "\n" for row in rows())
    with app.app_context():
        row = runs.create_training("bench-base", f"bench-tuned-{index}", "sft", {"source": "jsonl", "jsonl": jsonl},
                                   {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "learning_rate": 1e-2,
                                    "max_steps": steps, "per_device_train_batch_size": batch, "max_length": 64,
                                    "save_steps": save_steps}, submit=False)
        started = time.perf_counter()
        result = runs.execute_training(row.id)
        elapsed = time.perf_counter() - started
        assert result["status"] == "succeeded", result["error"]
        assert len(result["losses"]) == steps
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="Optimizer steps per training (default 100).")
    parser.add_argument("--batch", type=int, default=4, help="per_device_train_batch_size (default 4).")
    parser.add_argument("--save-steps", type=int, default=50, help="promptyard checkpoint interval (default 50).")
    parser.add_argument("--rounds", type=int, default=5, help="Raw/promptyard pairs (default 5).")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: a tiny model "
                        "gains nothing from more, and on a shared 2-core machine they only contend).")
    args = parser.parse_args()
    if min(args.steps, args.batch, args.save_steps, args.rounds) < 1:
        parser.error("--steps, --batch, --save-steps and --rounds must be at least 1")

    from tiny_models import build_tiny_gpt2, build_trainable_gpt2
    from transformers.utils import logging as hf_logging

    from promptyard import create_app
    from promptyard.db import db
    from promptyard.models import service

    import torch

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="promptyard-bench-training-"))
    model_dir = build_trainable_gpt2(work / "model", build_tiny_gpt2(work / "tokenizer"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'bench.db'}", "PROMPTYARD_HOME": str(work),
                      "PROMPTYARD_ADMIN_KEY": None})
    with app.app_context():
        db.create_all()
        service.register_model("bench-base", "transformers", str(model_dir))
    raw_times, ours, tokens = [], [], 0
    for index in range(args.rounds):
        seconds, tokens = raw_train(model_dir, work / f"raw-{index}", args.steps, args.batch)
        raw_times.append(seconds)
        ours.append(promptyard_train(app, model_dir, index, args.steps, args.batch, args.save_steps))
        print(f"round {index + 1}: raw {args.steps / raw_times[-1]:.1f} steps/s, "
              f"promptyard {args.steps / ours[-1]:.1f} steps/s", file=sys.stderr)

    def describe(times: list[float]) -> str:
        rates = sorted(args.steps / t for t in times)
        return f"{statistics.median(rates):.1f} ({rates[0]:.1f} to {rates[-1]:.1f})"

    print(f"\ntiny trainable GPT-2 (2 layers, 64 wide), LoRA r=16 all-linear, {args.steps} steps of {args.batch} rows, "
          f"{tokens} tokens per training, CPU, {args.threads} torch thread(s), {args.rounds} rounds")
    print("| what | steps/s median (range) | tokens/s median |")
    print("| --- | --- | --- |")
    print(f"| raw TRL SFTTrainer.train() | {describe(raw_times)} | {tokens / statistics.median(raw_times):.0f} |")
    print(f"| promptyard training job, end to end | {describe(ours)} | {tokens / statistics.median(ours):.0f} |")
    print(f"| promptyard / raw time (median) | {statistics.median(ours) / statistics.median(raw_times):.2f}x | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
