"""The remote backend: an :class:`~sie_core.Engine` whose models live on an SIE-compatible HTTP server.

``Engine(base_url="http://host:8080", api_key=...)`` (or ``SIE_BASE_URL`` for the command line) sends every
call to a ``sie-agents serve`` process or an SIE cluster, speaking SIE's wire protocol (MessagePack bodies on
``/v1/encode|score|extract/{model}``, ``/v1/models``), and returns the same result types as the local engine.
Many agents can then share one set of loaded models instead of each loading its own.

All requests run on the engine's background loop through one pooled ``httpx.AsyncClient``. A server that
cannot be reached is retried a few times with backoff and then reported as
:class:`~sie_core.RemoteUnavailableError`; ``503 MODEL_LOADING`` is retried (honouring ``Retry-After``)
for up to ``load_timeout_s``; ``503 QUEUE_FULL`` is retried with backoff; every other error code comes back
as the same :class:`~sie_core.SieError` subclass the server raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any
from urllib.parse import quote

from .config import EngineConfig
from .errors import ModelLoadingError, OverloadedError, RemoteError, RemoteUnavailableError, SieError
from .requests import EncodeBody, EncodeRequest, ExtractBody, ExtractRequest, ScoreBody, ScoreRequest
from .results import EncodeResult, ExtractResult, ModelInfo, ScoreResult
from .wire import (
    ERROR_CODE_HEADER,
    JSON,
    MSGPACK,
    encode_results_from_wire,
    error_from_wire,
    extract_results_from_wire,
    model_info_from_wire,
    packb,
    score_result_from_wire,
    unpackb,
)

__all__ = ["RemoteBackend"]

logger = logging.getLogger(__name__)

_DEFAULT_LOADING_DELAY_S = 2.0
_MAX_DELAY_S = 30.0


class RemoteBackend:
    """Sends engine calls to an SIE-compatible server. Used by :class:`~sie_core.Engine`; not public API.

    Args:
        config: The engine's configuration (``base_url`` must be set).
        listeners: The engine's listeners; each call reports ``on_request`` like a local call does.
    """

    def __init__(self, config: EngineConfig, listeners: list[Any]) -> None:
        assert config.base_url is not None
        try:
            import httpx
            import msgpack  # noqa: F401 - fail now, with the fix, rather than on the first call
        except ImportError as exc:  # pragma: no cover - both come with sie-agents[remote]
            raise RemoteError(
                f"a remote engine (base_url) needs httpx and msgpack: pip install 'sie-agents[remote]' ({exc})"
            ) from None
        self.config = config
        self.base_url: str = config.base_url
        self._listeners = listeners
        self._httpx = httpx
        self._client: Any = None
        self._states: dict[str, str] = {}  # what the server last told us about each model

    def _http(self) -> Any:
        if self._client is None:
            httpx = self._httpx
            headers = {"User-Agent": "sie-agents", "X-SIE-SDK-Version": "0.10.1"}
            if self.config.api_key:
                headers["Authorization"] = f"Bearer {self.config.api_key}"
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.config.remote_timeout_s, connect=min(10.0, self.config.remote_timeout_s)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ------------------------------------------------------------------ transport
    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, model: str | None = None
    ) -> Any:
        """One logical request with retries; returns the decoded body of a 2xx answer.

        Raises:
            RemoteUnavailableError: The server cannot be reached (after retries) or the connection broke.
            SieError: The server's error, mapped back to its class.
        """
        httpx = self._httpx
        client = self._http()
        content = packb(body) if body is not None else None
        headers = {"Accept": MSGPACK if body is not None else JSON}
        if content is not None:
            headers["Content-Type"] = MSGPACK
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = await client.request(method, path, content=content, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt < self.config.remote_max_retries:
                    await self._sleep(attempt, None, f"cannot connect to {self.base_url} ({type(exc).__name__})")
                    attempt += 1
                    continue
                raise RemoteUnavailableError(
                    f"the SIE server at {self.base_url} cannot be reached ({type(exc).__name__}: {exc}) after "
                    f"{attempt + 1} attempts; check that `sie-agents serve` (or your SIE cluster) is running "
                    "there and that base_url is right"
                ) from None
            except httpx.TimeoutException:
                raise RemoteUnavailableError(
                    f"the SIE server at {self.base_url} did not answer {method} {path} within "
                    f"{self.config.remote_timeout_s:g} s; raise remote_timeout_s for slow calls"
                ) from None
            except httpx.TransportError as exc:
                raise RemoteUnavailableError(
                    f"the connection to the SIE server at {self.base_url} broke during {method} {path} "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            if response.status_code < 400:
                if model is not None:
                    self._states[model] = "loaded"
                return self._decode(response)
            error = self._error(response)
            if isinstance(error, ModelLoadingError):
                if model is not None:
                    self._states[model] = "loading"
                waited = time.monotonic() - started
                if waited < self.config.load_timeout_s:
                    delay = min(error.retry_after or _DEFAULT_LOADING_DELAY_S, self.config.load_timeout_s - waited)
                    logger.info("%s: %s; retrying in %.1f s", self.base_url, error.message, delay)
                    await asyncio.sleep(max(delay, 0.05))
                    continue
            elif isinstance(error, OverloadedError) and attempt < self.config.remote_max_retries:
                await self._sleep(attempt, error.retry_after, error.message)
                attempt += 1
                continue
            raise error

    async def _sleep(self, attempt: int, retry_after: float | None, why: str) -> None:
        if retry_after is not None and attempt == 0:
            delay = min(retry_after, _MAX_DELAY_S)
        else:
            base = max(0.25, retry_after or 0.0)
            delay = min(base * (2**attempt), _MAX_DELAY_S) * random.uniform(0.75, 1.0)
        logger.info("%s; retrying in %.2f s", why, delay)
        await asyncio.sleep(delay)

    def _decode(self, response: Any) -> Any:
        content_type = response.headers.get("content-type", "")
        try:
            if MSGPACK in content_type:
                return unpackb(response.content, arrays=True)
            return json.loads(response.content)
        except ValueError as exc:
            raise RemoteError(
                f"the server at {self.base_url} sent a malformed {content_type or 'untyped'} body: {exc}"
            ) from None

    def _error(self, response: Any) -> SieError:
        status = int(response.status_code)
        code: str | None = response.headers.get(ERROR_CODE_HEADER)
        message = ""
        reason = None
        try:
            data = self._decode(response)
        except RemoteError:
            data = None
        detail = None
        if isinstance(data, dict):
            detail = data.get("error", data.get("detail"))
        if isinstance(detail, dict):
            code = code or detail.get("code")
            message = str(detail.get("message") or "")
            reason = detail.get("reason")
        elif detail is not None:
            message = str(detail)
        if not message:
            message = response.text[:500] if response.text else f"HTTP {status}"
        retry_after = None
        raw = response.headers.get("Retry-After")
        if raw:
            try:
                retry_after = max(0.0, float(raw))
            except ValueError:
                retry_after = None
        if status in (401, 403):
            return RemoteError(
                f"the SIE server at {self.base_url} refused the request ({status}): {message}; "
                "pass the server's token as api_key= (or SIE_API_KEY)"
            )
        return error_from_wire(status, code, message, retry_after=retry_after, reason=reason)

    def _emit(self, model: str, task: str, started: float, items: int, error: SieError | None) -> None:
        seconds = time.perf_counter() - started
        for listener in self._listeners:
            try:
                listener.on_request(model, task, seconds, items, error)
            except Exception:  # a metrics bug must never fail a request
                logger.exception("engine listener failed")

    async def _call(self, task: str, model: str, items: int, body: dict[str, Any]) -> Any:
        started = time.perf_counter()
        error: SieError | None = None
        try:
            return await self._request("POST", f"/v1/{task}/{_path(model)}", body, model=model)
        except SieError as exc:
            error = exc
            raise
        finally:
            self._emit(model, task, started, items, error)

    # ------------------------------------------------------------------ engine calls
    def start(self) -> None:
        """Nothing to start: the connection pool opens on the first request."""

    async def close(self) -> None:
        """Close the connection pool."""
        await self.aclose()

    async def encode(self, request: EncodeRequest) -> list[EncodeResult]:
        """Encode on the server."""
        name = str(request.model)
        body = EncodeBody.from_request(request).model_dump(exclude_none=True)
        data = await self._call("encode", name, len(request.items), body)
        return encode_results_from_wire(data, name, request.ids, request.output_dtype, request.output_types)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """Score on the server (``top_k`` is applied here, so any SIE server works)."""
        name = str(request.model)
        body = ScoreBody.from_request(request).model_dump(exclude_none=True)
        data = await self._call("score", name, len(request.items), body)
        return score_result_from_wire(data, name, request.ids, request.query.id, request.top_k)

    async def extract(self, request: ExtractRequest) -> list[ExtractResult]:
        """Extract on the server."""
        name = str(request.model)
        body = ExtractBody.from_request(request).model_dump(exclude_none=True)
        data = await self._call("extract", name, len(request.items), body)
        return extract_results_from_wire(data, name, request.ids)

    async def unload(self, model: str) -> bool:
        """Always False: a remote server manages its own memory."""
        return False

    def queue_depth(self) -> dict[str, int]:
        """Nothing queues here; the server's queues are its own."""
        return {}

    async def list_models(self, task: str | None) -> list[ModelInfo]:
        """The server's models."""
        data = await self._request("GET", "/v1/models")
        entries = data.get("models", []) if isinstance(data, dict) else []
        infos = [model_info_from_wire(e) for e in entries if isinstance(e, dict)]
        return [i for i in infos if task is None or task in i.tasks]

    async def model_info(self, model: str) -> ModelInfo:
        """One model's info from the server.

        Raises:
            UnknownModelError: The server does not serve it.
        """
        data = await self._request("GET", f"/v1/models/{_path(model)}")
        if not isinstance(data, dict):
            raise RemoteError(f"the server at {self.base_url} sent no model info for {model!r}")
        info = model_info_from_wire(data)
        self._states[model] = info.state
        return info

    async def load(self, model: str, task: str | None) -> ModelInfo:
        """Check the model exists on the server (and can do ``task``); the server loads it on first use."""
        info = await self.model_info(model)
        if task is not None and info.tasks and task not in info.tasks:
            from .errors import WrongTaskError

            raise WrongTaskError(f"model {info.id!r} on {self.base_url} is a {'/'.join(info.tasks)} model, not {task}")
        return info

    def model_state(self, model: str) -> str:
        """The model's state as the server last reported it to this client (no request is sent)."""
        return self._states.get(model, "not_loaded")


def _path(model: str) -> str:
    # Model ids keep their slashes in the path, as SIE's client sends them.
    return quote(model, safe="/:@")
