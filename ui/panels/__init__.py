"""The agent editor's panels (knowledge, voice, fine-tune, on-chain identity).

Each panel follows ``StudioContext.selected_agent``, the agent picked in the editor, so the
editor places them without wiring them to its own picker.
"""
