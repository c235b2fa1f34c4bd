"""Anima studio, the Gradio UI: ``studio.py`` composes the screens (one folder each)."""
