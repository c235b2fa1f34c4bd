"""The agent editor screen: pick, create, edit, delete and export agents on one screen, with
the card, lorebook, knowledge, voice, fine-tune, on-chain and generation tabs (the panels live
in ``ui/panels/``) and a dock column for panels that work beside the form."""
