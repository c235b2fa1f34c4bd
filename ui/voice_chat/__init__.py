"""Voice in the chat screen: the microphone (VAD ends a turn) and the spoken reply."""
