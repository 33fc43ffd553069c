"""The exceptions raised by sie_core.

Every error the engine raises on purpose is a :class:`SieError`, so one ``except SieError`` catches them
all. Each carries a stable ``code`` (the SIE wire protocol's error code) and the HTTP status a server
answers with, and its message says what was wrong and what is allowed::

    SieError                    code            status
    ├── InvalidInputError       INVALID_INPUT   400   bad texts, limits, options (also a ValueError)
    │   └── WrongTaskError      INVALID_INPUT   400   the model cannot do this task
    ├── UnknownModelError       MODEL_NOT_FOUND 404   no such model, or not allowed here
    ├── ModelLoadError          MODEL_LOAD_FAILED 502 weights missing, broken, or over the memory budget
    ├── ModelLoadingError       MODEL_LOADING   503   (remote servers) the model is still loading
    ├── OverloadedError         QUEUE_FULL      503   too much queued work; retry later
    ├── InferenceError          INFERENCE_ERROR 500   the model failed on valid input
    ├── RemoteError             (varies)              a remote server answered with an error
    │   └── RemoteUnavailableError UNAVAILABLE  503   the remote server cannot be reached
    └── EngineClosedError       ENGINE_CLOSED   503   the engine was closed
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "EngineClosedError",
    "InferenceError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelLoadingError",
    "OverloadedError",
    "RemoteError",
    "RemoteUnavailableError",
    "SieError",
    "UnknownModelError",
    "WrongTaskError",
]


class SieError(Exception):
    """Root of every error sie_core raises on purpose.

    Attributes:
        code: Stable machine-readable code, as used by the SIE HTTP protocol.
        status: HTTP status a server answers with for this error.
        retry_after: Seconds after which a retry may succeed, when that is known.
    """

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidInputError(SieError, ValueError):
    """The request itself is wrong: empty input, a limit exceeded, an unknown option value."""

    code = "INVALID_INPUT"
    status = 400


class WrongTaskError(InvalidInputError):
    """The model exists but cannot do the requested task (for example encode with a reranker)."""


class UnknownModelError(SieError):
    """The model id is not known here, or this engine is not allowed to serve it."""

    code = "MODEL_NOT_FOUND"
    status = 404


class ModelLoadError(SieError):
    """The model could not be loaded: weights missing or broken, or it does not fit the memory budget."""

    code = "MODEL_LOAD_FAILED"
    status = 502


class ModelLoadingError(SieError):
    """A remote server is still loading the model; retry after ``retry_after`` seconds."""

    code = "MODEL_LOADING"
    status = 503


class OverloadedError(SieError):
    """Too much work is queued for this model; retry later."""

    code = "QUEUE_FULL"
    status = 503


class InferenceError(SieError):
    """The model failed while running on input that passed validation."""

    code = "INFERENCE_ERROR"
    status = 500


class RemoteError(SieError):
    """A remote SIE-compatible server answered with an error this client could not map more closely."""

    code = "REMOTE_ERROR"
    status = 502


class RemoteUnavailableError(RemoteError):
    """The remote server could not be reached (refused, timed out, or kept answering 'busy')."""

    code = "UNAVAILABLE"
    status = 503


class EngineClosedError(SieError):
    """The engine has been closed and serves no more requests."""

    code = "ENGINE_CLOSED"
    status = 503


ERRORS_BY_CODE: dict[str, type[SieError]] = {
    cls.code: cls
    for cls in (
        InvalidInputError,
        UnknownModelError,
        ModelLoadError,
        ModelLoadingError,
        OverloadedError,
        InferenceError,
        EngineClosedError,
        RemoteUnavailableError,
    )
}
