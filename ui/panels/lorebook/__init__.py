"""The editor's lorebook panel: the card's entries, world-info books attached to the agent."""
