"""Domain exceptions raised by services.

The API maps each to an HTTP status in one exception handler; the UI shows the message.
Messages are written for the person who sent the bad input.
"""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError


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


def describe_validation_error(exc: PydanticValidationError, root: str = "") -> str:
    """Pydantic's report as one line naming each bad field (``'data.tags[0]': ...``)."""
    problems = []
    for err in exc.errors()[:5]:
        where = root
        for part in err["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        where = where.lstrip(".") or "value"
        if err["type"] == "missing":
            problems.append(f"'{where}' is required")
        elif err["type"] == "string_too_short":
            problems.append(f"'{where}' must not be empty")
        else:
            problems.append(f"'{where}': {err['msg'].lower()}")
    more = len(exc.errors()) - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    return "; ".join(problems) + suffix


class ConflictError(AnimaError):
    """The request is valid but the resource's state forbids it (e.g. cancel a finished job)."""

    status = 409


# ----- Knowledge bases: documents a base cannot take ----------------------------------------
class DocumentError(AnimaError):
    """A document for a knowledge base cannot be read (corrupt, encrypted, empty, no text).

    The message starts with the file name, so a user who uploaded several knows which one.
    """

    status = 422


class UnsupportedDocumentType(DocumentError):
    """A document of a type the knowledge base cannot read."""

    status = 415


# ----- Voice: recordings and speech engines -------------------------------------------------
class AudioError(AnimaError):
    """An uploaded recording cannot be used: not audio, truncated, too short or long, silent,
    clipped, or of an unsupported sample rate or channel layout. The message names which."""

    status = 422


class VoiceEngineError(AnimaError):
    """A speech engine (TTS or STT) is missing or failed to load (model files, espeak-ng)."""

    status = 503


# ----- On-chain identity: sign-in, token ownership and the chain node -----------------------
class AuthError(AnimaError):
    """Not signed in, or a sign-in that failed (bad or replayed signature, expired nonce,
    wrong chain id, unknown or revoked API key)."""

    status = 401


class NotOwnerError(AnimaError):
    """The caller is signed in but does not hold the agent's token (or own its draft)."""

    status = 403


class ConversationAccessError(AnimaError):
    """The conversation belongs to another wallet or another browser's visitor."""

    status = 403


class ChainUnavailableError(AnimaError):
    """The chain node cannot be reached; what needs it waits (mints) or is refused (edits of
    a minted agent, whose owner cannot be read)."""

    status = 503


class ChainError(AnimaError):
    """The chain answered but refused (a reverted transaction, a contract that is missing)."""

    status = 502


class PaymentRequiredError(AnimaError):
    """A priced agent called by a wallet whose prepaid balance cannot cover the request's worst
    case (nothing was generated or charged). ``details`` (balance, price...) join the error."""

    status = 402

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


# ----- Serving: admission and scheduling of language model requests -------------------------
# Each carries ``retry_after`` because the answer is "not now", not "never": the API turns it
# into a ``Retry-After`` header so that clients back off instead of failing.
class ServingError(AnimaError):
    """A request the model could not take now; ``retry_after`` (seconds) says when to retry."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(ServingError):
    """Too many requests are already waiting for the model."""

    status = 429


class ModelLoadingError(ServingError):
    """The model is still loading."""

    status = 503


class ServerBusyError(ServingError):
    """The request waited its whole deadline in the queue."""

    status = 503


class DeadlineExceededError(ServingError):
    """Generation ran past the request's deadline."""

    status = 504


class ReaderTooSlowError(ServingError):
    """The client read so slowly that the reply buffer filled; generation was stopped."""

    status = 408


# ----- Fine-tuning: training data and adapters (422s: the user's input is at fault) ---------
class NotEnoughExamplesError(ValidationError):
    """Too little training data for a fine-tune; the message says how much is needed."""


class ChatFileError(ValidationError):
    """An uploaded chat file (SillyTavern JSONL, JSONL of messages) cannot be used."""


class AdapterMismatchError(ValidationError):
    """A LoRA adapter was trained on another base model than the one the agent uses."""


# ----- API keys: scopes, rates and budgets ---------------------------------------------------
class ScopeError(AnimaError):
    """An API key used outside what it may do: a scope it lacks, or an agent not in its list."""

    status = 403


class RateLimitError(ServingError):
    """A key's requests, tokens a minute or concurrent replies are used up for now.

    ``headers`` carries the ``x-ratelimit-*`` state, so clients can pace themselves."""

    status = 429

    def __init__(
        self, message: str, retry_after: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after)
        self.headers = dict(headers or {})


class BudgetExceededError(AnimaError):
    """A key spent its token budget for the day or month (402: more needs a bigger budget)."""

    status = 402

    def __init__(self, message: str, used: int, limit: int) -> None:
        super().__init__(message)
        self.used, self.limit = used, limit
