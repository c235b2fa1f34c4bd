"""The editor's fine-tune panel: LoRA adapters trained on the character's own dialogues."""
