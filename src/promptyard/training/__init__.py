"""Training: data from history and evaluations, LoRA/QLoRA fine-tuning with PEFT + TRL, export and Hub push."""
