"""The training engine: one LoRA training pass per file, the Trainer subclass, and the promotion gate."""
