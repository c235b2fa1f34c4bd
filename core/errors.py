"""Domain exceptions raised by services.

The API maps each to an HTTP status in one exception handler; the UI shows the message.
Messages are written for the person who sent the bad input.
"""

from __future__ import annotations


class AnimaError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(AnimaError):
    status = 404


class CardFormatError(AnimaError):
    """A character card file is corrupt, truncated, of the wrong type or missing fields."""

    status = 422


class UnsafePathError(CardFormatError):
    """An archive entry tries to escape its target folder."""


class UploadTooLargeError(AnimaError):
    status = 413


class ValidationError(AnimaError):
    status = 422


class BackendError(AnimaError):
    """The language model backend failed (model missing, remote server down)."""

    status = 502
