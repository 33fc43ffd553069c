"""Engine configuration: one frozen object, and the one place that reads ``SIE_*`` environment variables."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .catalog import BACKENDS, ModelSpec
from .device import DEVICES, DTYPES
from .errors import InvalidInputError
from .threads import parse_num_threads

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_MODELS", "EngineConfig", "load_config_file"]

#: The model each task uses when the caller names none (MCP tools, LangChain classes).
DEFAULT_MODELS: dict[str, str] = {
    "encode": "sentence-transformers/all-MiniLM-L6-v2",
    "score": "cross-encoder/ms-marco-MiniLM-L6-v2",
    "extract": "urchade/gliner_multi-v2.1",
}


@dataclass(frozen=True)
class EngineConfig:
    """Everything an :class:`~sie_core.Engine` can be told.

    Attributes:
        device: ``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: Weights dtype for torch models: ``auto`` (float16 on CUDA, float32 elsewhere) or explicit.
        backend: Default backend for models that have several (``torch`` or ``onnx``); None = per model.
        max_loaded_models: Most models held at once; the least recently used idle one is evicted.
        memory_budget_mb: Most memory (MB) the loaded models' weights may take together.
        idle_timeout_s: Evict a model nobody used for this long.
        max_batch_size: Most items in one forward pass.
        max_batch_tokens: Most (estimated) tokens in one forward pass.
        max_queue_items: Most items waiting per model; past it callers get OverloadedError.
        max_batch_wait_ms: Longest wait for a batch to fill up again to the size of the previous one (callers
            on other threads need a moment to send their next request); a lone caller never waits.
        max_items_per_call: Most items (texts, documents) in one call.
        max_text_chars: Longest text accepted, in characters.
        max_labels: Most labels in one extract call.
        models: Catalog additions and overrides.
        default_models: Model used per task when a caller names none.
        cache_dir: Hugging Face cache folder (default: the hub's own default).
        offline: Never download; use the local cache and packaged weights only.
        allow_any_model: Serve hub ids that are not in the catalog.
        allow_local_paths: Serve model ids that are local folders.
        num_threads: CPU threads for inference. None = sized by :func:`sie_core.threads.thread_plan` from the
            CPUs this process may use (affinity mask, cgroup quota, one per physical core). ``SIE_NUM_THREADS``
            takes a positive number or ``auto``.
        onnx_dir: Folder where ``sie-agents export-onnx`` writes ONNX copies and the engine looks for them
            (None = ``~/.cache/sie-agents/onnx``, or under ``$XDG_CACHE_HOME``).
        load_timeout_s: Give up on a load that takes longer (downloads included).
        load_wait_s: Longest a request waits for its model to be loaded and handed to it (queueing for a
            free model slot included) before it fails with :class:`~sie_core.ModelLoadingError`; the load
            goes on in the background. None = wait for the whole load (at most ``load_timeout_s``).
        base_url: Use a remote SIE-compatible server (``sie-agents serve`` or an SIE cluster) instead of
            loading models in this process, e.g. ``http://localhost:8080``. Every call then goes over HTTP.
        api_key: Bearer token sent to ``base_url``.
        remote_timeout_s: How long one HTTP request to ``base_url`` may take.
        remote_max_retries: Retries of a remote request that could not connect or met a full queue
            (with backoff); a model that is still loading on the server is waited for up to ``load_timeout_s``.
    """

    device: str = "auto"
    dtype: str = "auto"
    backend: str | None = None
    max_loaded_models: int | None = None
    memory_budget_mb: float | None = None
    idle_timeout_s: float | None = None
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_queue_items: int = 8192
    max_batch_wait_ms: float = 2.0
    max_items_per_call: int = 2048
    max_text_chars: int = 200_000
    max_labels: int = 64
    models: tuple[ModelSpec, ...] = ()
    default_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    cache_dir: str | None = None
    offline: bool = False
    allow_any_model: bool = True
    allow_local_paths: bool = True
    num_threads: int | None = None
    onnx_dir: str | None = None
    load_timeout_s: float = 1800.0
    load_wait_s: float | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    remote_timeout_s: float = 300.0
    remote_max_retries: int = 4

    def __post_init__(self) -> None:
        if self.device.split(":", 1)[0] not in DEVICES:
            raise InvalidInputError(f"device {self.device!r} is not known; use one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"dtype {self.dtype!r} is not known; use one of {', '.join(DTYPES)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise InvalidInputError(f"backend {self.backend!r} is not known; use one of {', '.join(BACKENDS)}")
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "max_queue_items": self.max_queue_items,
            "max_items_per_call": self.max_items_per_call,
            "max_text_chars": self.max_text_chars,
            "max_labels": self.max_labels,
            "max_loaded_models": self.max_loaded_models,
            "memory_budget_mb": self.memory_budget_mb,
            "idle_timeout_s": self.idle_timeout_s,
            "num_threads": self.num_threads,
            "load_timeout_s": self.load_timeout_s,
            "load_wait_s": self.load_wait_s,
            "remote_timeout_s": self.remote_timeout_s,
        }
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        if self.remote_max_retries < 0:
            raise InvalidInputError(f"remote_max_retries must be 0 or more, got {self.remote_max_retries!r}")
        if self.base_url is not None:
            object.__setattr__(self, "base_url", _check_base_url(self.base_url))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "default_models", {**DEFAULT_MODELS, **dict(self.default_models)})

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EngineConfig:
        """Build a config from ``SIE_*`` environment variables, a config file, and explicit overrides.

        Precedence, lowest first: defaults, the file named by ``SIE_CONFIG``, ``SIE_*`` variables,
        ``overrides`` (None values in ``overrides`` are ignored, so argparse results pass straight in).

        Variables: ``SIE_DEVICE``, ``SIE_DTYPE``, ``SIE_BACKEND``, ``SIE_MAX_LOADED_MODELS``,
        ``SIE_MEMORY_BUDGET_MB``, ``SIE_IDLE_TIMEOUT_S``, ``SIE_MAX_BATCH_SIZE``, ``SIE_MAX_BATCH_TOKENS``,
        ``SIE_MAX_QUEUE_ITEMS``, ``SIE_MAX_ITEMS_PER_CALL``, ``SIE_MAX_TEXT_CHARS``, ``SIE_CACHE_DIR``,
        ``SIE_OFFLINE``, ``SIE_NUM_THREADS``, ``SIE_ONNX_DIR``, ``SIE_ALLOW_ANY_MODEL``, ``SIE_LOAD_TIMEOUT_S``,
        ``SIE_LOAD_WAIT_S``, ``SIE_ENCODE_MODEL``,
        ``SIE_SCORE_MODEL``, ``SIE_EXTRACT_MODEL``, ``SIE_BASE_URL``, ``SIE_API_KEY``,
        ``SIE_REMOTE_TIMEOUT_S``; ``HF_HUB_OFFLINE=1`` also turns ``offline`` on.

        Raises:
            InvalidInputError: A variable or file value is malformed.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = env.get("SIE_CONFIG")
        if config_path:
            values.update(load_config_file(config_path))
        types = {f.name: f.type for f in fields(cls)}
        for name in types:
            raw = env.get(f"SIE_{name.upper()}")
            if raw is None or name in ("models", "default_models"):
                continue
            values[name] = _parse_env_value(name, raw, str(types[name]))
        defaults = dict(values.get("default_models") or {})
        for task in DEFAULT_MODELS:
            raw = env.get(f"SIE_{task.upper()}_MODEL")
            if raw:
                defaults[task] = raw
        if defaults:
            values["default_models"] = defaults
        if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            values.setdefault("offline", True)
        extra_models = overrides.pop("models", None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if extra_models:
            values["models"] = (*values.get("models", ()), *extra_models)
        return cls(**values)


def _check_base_url(value: str) -> str:
    from urllib.parse import urlsplit

    url = value.strip() if isinstance(value, str) else value
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except (TypeError, ValueError, AttributeError):
        parts = None
    if not url or parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"base_url {value!r} is not an absolute http:// or https:// URL with a host "
            "(for example 'http://localhost:8080')"
        )
    return str(url).rstrip("/")


def _parse_env_value(name: str, raw: str, type_name: str) -> Any:
    if name == "num_threads":
        return parse_num_threads(raw)
    raw = raw.strip()
    try:
        if "bool" in type_name:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if raw == "" and "None" in type_name:
            return None
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        return raw
    except ValueError:
        raise InvalidInputError(
            f"environment variable SIE_{name.upper()}={raw!r} is not a valid {type_name.split(' ')[0]}"
        ) from None


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML or JSON config file into EngineConfig keyword arguments.

    The file has an optional ``[engine]`` table with EngineConfig fields, an optional
    ``[default_models]`` table (task = model id), and ``[[models]]`` entries (catalog additions)::

        [engine]
        max_loaded_models = 2

        [default_models]
        encode = "BAAI/bge-small-en-v1.5"

        [[models]]
        id = "my-embedder"
        path = "/models/my-embedder"
        task = "encode"

    Raises:
        InvalidInputError: The file is missing, malformed, or has unknown keys.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"config file {str(file)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"config file {str(file)!r} is not valid {file.suffix or 'TOML'}: {exc}") from None
    allowed_top = {"engine", "models", "default_models"}
    unknown_top = sorted(set(data) - allowed_top)
    if unknown_top:
        raise InvalidInputError(
            f"config file {str(file)!r}: unknown section(s) {', '.join(unknown_top)}; "
            f"allowed: {', '.join(sorted(allowed_top))}"
        )
    engine = dict(data.get("engine", {}))
    allowed = {f.name for f in fields(EngineConfig)} - {"models"}
    unknown = sorted(set(engine) - allowed)
    if unknown:
        raise InvalidInputError(
            f"config file {str(file)!r}: unknown [engine] key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    models = []
    for entry in data.get("models", []):
        entry = dict(entry)
        if entry.get("path"):
            entry["path"] = str((file.parent / os.path.expanduser(entry["path"])).resolve())
        models.append(ModelSpec.from_dict(entry))
    engine["models"] = tuple(models)
    if data.get("default_models"):
        engine["default_models"] = dict(data["default_models"])
    return engine
