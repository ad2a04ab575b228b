"""The training engine: config, models, data, and one LoRA training pass per file."""
