"""The editor's voice panel: the agent's cloned voice, from a consented sample."""
