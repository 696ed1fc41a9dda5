"""Supervised fine-tuning on a run's dialogues: a thin wrapper over TRL's SFTTrainer (+ peft LoRA)."""
