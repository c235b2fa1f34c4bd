"""Voice: text-to-speech engines, speech-to-text, voice profiles and the voice chat loop.

``voice.service.VoiceService`` is the public entry point used by ``api/`` and ``ui/``;
``voice.base`` holds the engine protocols, ``voice.factory`` picks implementations from
settings and ``voice.pool`` shares loaded engines.
"""
