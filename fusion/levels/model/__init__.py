"""Model-level fusion: the best responses of a routing log distilled into one model (TRL SFT + PEFT LoRA)."""
