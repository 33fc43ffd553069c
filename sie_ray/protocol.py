"""What a model replica sends back to the ingress: the engine's result or its error, and who served it.

Errors travel as data rather than as raised exceptions: Ray would wrap a raised :class:`~sie_core.SieError` in a
``RayTaskError`` and drop ``retry_after``; a :class:`Failure` rebuilds the same class with the same message and
retry hint on the ingress, so the HTTP envelope is exactly the single server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sie_core import SieError
from sie_core.wire import error_from_wire

__all__ = ["Failure", "Reply"]


@dataclass(frozen=True)
class Failure:
    """A :class:`~sie_core.SieError` raised in a replica, in picklable form."""

    cls: type[SieError]
    code: str
    status: int
    message: str
    retry_after: float | None = None

    @classmethod
    def of(cls, exc: SieError) -> Failure:
        """Capture ``exc``."""
        return cls(type(exc), exc.code, exc.status, exc.message, exc.retry_after)

    def exception(self) -> SieError:
        """The error again, of the same class where it can be rebuilt from its message alone."""
        try:
            return self.cls(self.message, retry_after=self.retry_after)
        except TypeError:  # a class with extra required arguments: the wire mapping by code
            return error_from_wire(self.status, self.code, self.message, retry_after=self.retry_after)


@dataclass(frozen=True)
class Reply:
    """One replica call's outcome.

    Attributes:
        worker: The replica that served it (``deployment#replica id``), sent to clients as ``X-SIE-Worker``.
        value: The engine's result (None when the call failed).
        failure: The engine's error, if any.
        queue_s: Time the request's items waited in the replica's batch queue.
        inference_s: Forward-pass time spent on the request's items.
    """

    worker: str
    value: Any = None
    failure: Failure | None = None
    queue_s: float | None = None
    inference_s: float | None = None
