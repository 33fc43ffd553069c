"""Connection-level time limits for uvicorn: idle connections, slow headers, and (as a backstop) slow bodies.

uvicorn bounds only the idle time *between* requests (``timeout_keep_alive``). A client that opens a
connection and sends nothing, sends its headers a byte at a time, or trickles its body would hold a socket
(and, for the body, a request task) forever. :func:`guarded_protocol` wraps uvicorn's HTTP protocol class
(httptools when installed, else h11) with three timers per connection:

* **idle**: a connection that sends nothing, new or after an answer, is closed after ``keep_alive_timeout_s``;
* **headers**: from a request's first byte to the end of its headers, at most ``header_timeout_s``; then the
  client gets ``408`` with the error envelope and the connection is closed;
* **body**: the app answers a body that is not complete ``body_timeout_s`` after its headers with 408 itself
  (see :mod:`sie_server.app`); this backstop closes the connection a few seconds later if nothing answered.

>>> config = uvicorn.Config(app, http=guarded_protocol(5, 10, 30))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

__all__ = ["guarded_protocol"]

logger = logging.getLogger("sie_server.http")

#: Extra time the connection-level body timer gives the app to answer 408 itself.
BODY_GRACE_S = 5.0


def _base_protocol() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is part of the server extra; h11 comes with uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def _timeout_response(message: str) -> bytes:
    body = json.dumps({"error": {"code": "REQUEST_TIMEOUT", "message": message, "type": "invalid_request_error"}})
    data = body.encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nx-sie-error-code: REQUEST_TIMEOUT\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


def guarded_protocol(
    keep_alive_timeout_s: float,
    header_timeout_s: float,
    body_timeout_s: float,
    base: type[asyncio.Protocol] | None = None,
) -> type[asyncio.Protocol]:
    """The HTTP protocol class of uvicorn with the three connection timers (pass it as ``uvicorn.Config(http=...)``).

    Args:
        keep_alive_timeout_s: Close a new connection that sends nothing after this long.
        header_timeout_s: Most time from a request's first byte to the end of its headers.
        body_timeout_s: Most time from the end of the headers to the end of the body (plus a short grace).
        base: The protocol class to extend; uvicorn's httptools protocol, else its h11 one.
    """
    parent: Any = base or _base_protocol()

    class GuardedProtocol(parent):
        """uvicorn's protocol with idle, header and body timers."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sie_timer: asyncio.TimerHandle | None = None
            self._sie_phase = "idle"

        # -- timers ---------------------------------------------------------------------------------------
        def _sie_arm(self, phase: str, seconds: float) -> None:
            self._sie_cancel()
            self._sie_phase = phase
            self._sie_timer = self.loop.call_later(seconds, self._sie_expired, phase)

        def _sie_cancel(self) -> None:
            if self._sie_timer is not None:
                self._sie_timer.cancel()
                self._sie_timer = None
            self._sie_phase = "none"

        def _sie_expired(self, phase: str) -> None:
            self._sie_timer = None
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            client = "{}:{}".format(*self.client) if self.client else "a client"
            if phase == "headers":
                logger.info(
                    "closing the connection of %s: its request headers took over %g s", client, header_timeout_s
                )
                transport.write(
                    _timeout_response(
                        f"the request headers did not arrive within {header_timeout_s:g} s (the server's "
                        "--header-timeout); send them at once"
                    )
                )
            elif phase == "body":
                logger.info("closing the connection of %s: its request body took over %g s", client, body_timeout_s)
            else:
                logger.debug("closing the idle connection of %s", client)
            transport.close()

        def _sie_update(self) -> None:
            """Pick the timer for where the connection stands after the bytes just parsed."""
            cycle = getattr(self, "cycle", None)
            if cycle is None or cycle.response_complete:
                # Between requests: bytes have arrived, so a new request's headers are under way.
                if self._sie_phase != "headers":
                    self._sie_arm("headers", header_timeout_s)
            elif cycle.more_body:
                if self._sie_phase != "body":
                    self._sie_arm("body", body_timeout_s + BODY_GRACE_S)
            else:
                self._sie_cancel()  # the request is complete; the app is answering it

        # -- asyncio.Protocol -------------------------------------------------------------------------------
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._sie_arm("idle", keep_alive_timeout_s)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport is not None and not self.transport.is_closing():
                self._sie_update()

        def connection_lost(self, exc: Exception | None) -> None:
            self._sie_cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Idle until the next request (uvicorn's own keep-alive timer counts whole seconds); a request still
            # being received (the app answered before reading the whole body) keeps its body timer.
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            cycle = getattr(self, "cycle", None)
            if cycle is not None and not cycle.response_complete:  # a pipelined request is under way
                if not cycle.more_body:
                    self._sie_cancel()
                elif self._sie_phase != "body":
                    self._sie_arm("body", body_timeout_s + BODY_GRACE_S)
            elif self._sie_phase != "body":
                self._sie_arm("idle", keep_alive_timeout_s)

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{parent.__name__}"
    return GuardedProtocol
