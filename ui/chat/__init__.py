"""The chat screen: talk to an agent in text (and by voice, ``ui/voice_chat``)."""
