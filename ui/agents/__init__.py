"""The agent editor screen: pick, create, edit, delete and export agents, with its panels
(knowledge, voice, fine-tune, on-chain identity) in ``ui/panels/``."""
