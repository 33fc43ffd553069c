"""The protocol every backend implements: the local one (models in this process) and the remote one (HTTP).

:class:`~sie_core.Engine` is a facade over one backend: it validates each call into a typed request
(:mod:`sie_core.requests`), fills in the default model, bridges sync and async callers onto its event loop,
and hands the request to the backend. Every coroutine below runs on the engine's loop thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .errors import SieError
from .requests import EncodeRequest, ExtractRequest, ScoreRequest
from .results import EncodeResult, ExtractResult, ModelInfo, ScoreResult

if TYPE_CHECKING:
    from .catalog import Catalog
    from .config import EngineConfig

__all__ = ["Backend", "BackendFactory", "EngineListener"]


class Backend(Protocol):
    """Where an engine's calls are served. Requests arrive validated, with ``model`` set."""

    def start(self) -> None:
        """Called once on the engine's loop before any request (start background tasks there)."""

    async def encode(self, request: EncodeRequest) -> list[EncodeResult]:
        """One result per item, in order."""

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """The items ranked against the query, best first."""

    async def extract(self, request: ExtractRequest) -> list[ExtractResult]:
        """One result per item, in order."""

    async def list_models(self, task: str | None) -> list[ModelInfo]:
        """The models this backend serves (only ``task``'s when given)."""

    async def load(self, model: str, task: str | None) -> ModelInfo:
        """Load a model now (or check that the remote server has it)."""

    async def unload(self, model: str) -> bool:
        """Unload a model; whether it was loaded."""

    def model_state(self, model: str) -> str:
        """``not_loaded``, ``loading``, ``loaded`` or ``failed``; cheap, callable from any thread."""

    def queue_depth(self) -> dict[str, int]:
        """Items waiting per loaded model."""

    async def close(self) -> None:
        """Release everything (models, connections, threads)."""


class BackendFactory(Protocol):
    """Builds an engine's backend (``Engine(backend_factory=factory)``), on the engine's loop thread at its first call.

    A factory whose ``remote`` attribute is true serves the models elsewhere and bounds its own waits for cold
    models (as the remote backend does); front ends then leave that waiting to it (see :attr:`Engine.remote`).
    """

    def __call__(self, config: EngineConfig, catalog: Catalog, listeners: list[EngineListener]) -> Backend:
        """The backend for an engine with this configuration, catalog and listeners."""


class EngineListener(Protocol):
    """Receives engine events (for metrics). Methods are called on the engine's loop thread; keep them quick."""

    def on_request(self, model: str, task: str, seconds: float, items: int, error: SieError | None) -> None:
        """A call finished (``error`` is None on success)."""

    def on_batch(self, model: str, task: str, size: int, seconds: float) -> None:
        """A forward pass of ``size`` items finished."""

    def on_load(self, model: str, seconds: float, error: SieError | None) -> None:
        """A model load finished."""

    def on_unload(self, model: str, reason: str) -> None:
        """A model was unloaded."""
