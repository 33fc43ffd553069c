"""Which engine a LangChain class talks to: one shared in-process engine by default, or a remote one.

Every class in this package takes ``engine=`` (an existing :class:`sie_core.Engine`), or ``base_url=`` /
``api_key=`` (a remote SIE-compatible server), or neither — then it uses the process-wide default engine,
created on first use, so several classes never load the same model twice.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from sie_core import Engine, EngineConfig, InvalidInputError

__all__ = ["SIEEngineClient", "default_engine", "remote_engine", "set_default_engine"]

_lock = threading.Lock()
_default: Engine | None = None
_remotes: dict[tuple[str, str | None, float | None], Engine] = {}


def default_engine() -> Engine:
    """The process-wide engine every class uses unless given ``engine=`` or ``base_url=``.

    Created on first use from ``SIE_*`` environment variables (:meth:`EngineConfig.from_env`); building it
    loads nothing — each model loads on its first call and is then shared by every class.
    """
    global _default
    with _lock:
        if _default is None or _default.closed:
            _default = Engine(EngineConfig.from_env())
        return _default


def set_default_engine(engine: Engine | None) -> None:
    """Make ``engine`` the process-wide default (None: create a fresh one from the environment on next use).

    An object keeps the engine it resolved on its first call; set the default before that.
    """
    global _default
    with _lock:
        _default = engine


def remote_engine(base_url: str, api_key: str | None = None, timeout_s: float | None = None) -> Engine:
    """The engine for a remote SIE-compatible server; one per (``base_url``, ``api_key``, ``timeout_s``), shared.

    Args:
        base_url: The server's URL.
        api_key: Bearer token.
        timeout_s: Seconds to wait for an answer; None keeps the engine's default (``SIE_REMOTE_TIMEOUT_S``).

    Raises:
        InvalidInputError: ``base_url`` is not an absolute http(s) URL.
    """
    key = (base_url, api_key, timeout_s)
    with _lock:
        engine = _remotes.get(key)
        if engine is not None and not engine.closed:
            return engine
        if timeout_s is None:
            engine = Engine(base_url=base_url, api_key=api_key)
        else:
            engine = Engine(base_url=base_url, api_key=api_key, remote_timeout_s=timeout_s)
        _remotes[key] = engine
        return engine


class SIEEngineClient(BaseModel):
    """Fields and engine resolution shared by every sie_langchain class (a mixin; not used on its own).

    Args:
        engine: An existing :class:`sie_core.Engine` to use (shared with anything else that uses it).
        base_url: URL of a remote SIE-compatible server; None runs the models in this process.
        api_key: Bearer token for the remote server.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Engine | None = Field(default=None, exclude=True, repr=False)
    """The engine to call; None: the process-wide default engine (or the remote one for ``base_url``)."""
    base_url: str | None = None
    """URL of a remote SIE-compatible server; None (the default) runs the models in this process."""
    api_key: SecretStr | None = None
    """Bearer token sent to ``base_url``."""

    _client: Engine | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_engine_source(self) -> SIEEngineClient:
        if self.engine is not None and self.base_url is not None:
            raise InvalidInputError("pass either engine= or base_url=, not both")
        if self.api_key is not None and self.base_url is None:
            raise InvalidInputError("api_key is only used with base_url (a remote server); set base_url too")
        return self

    def _remote_timeout_s(self) -> float | None:
        """Seconds a remote call may take (None: the engine's default); classes with ``timeout_s`` override it."""
        return None

    @property
    def client(self) -> Engine:
        """The engine this object calls: ``engine``, else the remote one for ``base_url``, else the default."""
        if self._client is None:
            if self.engine is not None:
                self._client = self.engine
            elif self.base_url is not None:
                key = self.api_key.get_secret_value() if self.api_key is not None else None
                self._client = remote_engine(self.base_url, key, self._remote_timeout_s())
            else:
                self._client = default_engine()
        return self._client
