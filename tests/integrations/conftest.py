"""One `sie-agents serve` for every integration module, and an in-process engine on the same weights to check it.

The server runs all-MiniLM-L6-v2 (configured by folder), the packaged SPLADE and ColBERT encoders, the int8 ONNX
ms-marco reranker and spaCy's en_core_web_sm, all offline. Every non-loopback connection (and name lookup) made
from the test process fails, so a framework that reaches for the network fails its test instead of passing slowly.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sie_core import Engine, EngineConfig, ModelSpec

from ..sie_server.http_server import ServeProcess
from ._support import ENCODER

_SCRATCH = tempfile.mkdtemp(prefix="sie-integrations-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
# Before any framework is imported: litellm (via dspy) fetches its price list at import unless told to use its own
# copy; CrewAI checks PyPI for a newer version and sends telemetry; both keep caches under HOME otherwise.
for key, value in {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DSPY_CACHEDIR": os.path.join(_SCRATCH, "dspy"),
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_STORAGE_DIR": os.path.join(_SCRATCH, "crewai"),
    "OTEL_SDK_DISABLED": "true",
    "ANONYMIZED_TELEMETRY": "False",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("SIE_API_KEY", None)  # the SDK would send it as a bearer token
os.environ.pop("SIE_BASE_URL", None)


def _loopback(host: Any) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    """Refuse connections and name lookups beyond this machine for the whole session."""
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise OSError(f"the integration tests must not reach the network ({address!r})")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check((host.decode() if isinstance(host, bytes) else host, 0))
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


@pytest.fixture(scope="session")
def encoder_spec(minilm_path: Path) -> ModelSpec:
    """The MiniLM entry both the server and the reference engine use."""
    return ModelSpec(id=ENCODER, task="encode", path=str(minilm_path))


@pytest.fixture(scope="session")
def server(encoder_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of one `sie-agents serve` shared by every integration module."""
    folder = tmp_path_factory.mktemp("integrations-serve")
    config = folder / "models.toml"
    config.write_text(
        f'[[models]]\nid = "{encoder_spec.id}"\ntask = "encode"\npath = "{encoder_spec.path}"\n', encoding="utf-8"
    )
    args = ["--config", str(config), "--device", "cpu", "--offline", "--no-mcp", "--load-wait", "120"]
    proc = ServeProcess(args, folder / "serve.log")
    yield proc.url
    code = proc.stop()
    log = proc.output()
    assert code == 0, log
    assert "Exception in ASGI application" not in log, log
    assert not [line for line in log.splitlines() if " ERROR sie_" in line], log


@pytest.fixture(scope="session")
def reference(encoder_spec: ModelSpec) -> Iterator[Engine]:
    """An in-process engine on the same weights: what every answer through an integration is checked against."""
    engine = Engine(EngineConfig(device="cpu", offline=True, models=(encoder_spec,)))
    yield engine
    engine.close()
