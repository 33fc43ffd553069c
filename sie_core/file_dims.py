"""Output dimensions of an encoder read from its local files, without loading weights (for model listings).

SIE's clients ask ``GET /v1/models/{model}`` for ``dims`` before their first encode (LanceDB sizes its vector
column from it), so a model that is not loaded yet must still report them. Only small files are read: JSON
configs, an export manifest, a safetensors header, or the pickled index of a torch file (never its tensors).
Anything not certain gives no entry rather than a guess.
"""

from __future__ import annotations

import collections
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .adapters.colbert_files import read_colbert_files
from .adapters.splade_files import read_splade_layout
from .errors import SieError
from .sources import ModelSource, read_export_manifest

__all__ = ["output_dims_from_files"]

_POOLING_MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
_MAX_HEADER = 100 * 2**20


def output_dims_from_files(family: str, source: ModelSource, options: Mapping[str, Any]) -> dict[str, int]:
    """Dimensions per encode output as the family's adapter will report them once loaded.

    Args:
        family: The model's family name (``dense``, ``splade``, ``colbert``, ``bge-m3``).
        source: The model's local files (as a load would pick them).
        options: The catalog entry's ``options`` (e.g. ColBERT's ``token_dims``, sentence-transformers'
            ``truncate_dim``).

    Returns:
        ``{output: dims}`` for what the files state; empty when they do not say (or cannot be read).
    """
    try:
        manifest = read_export_manifest(source.path)
        exported = manifest.get("dims")
        if isinstance(exported, int) and exported > 0 and family in ("dense", "splade", "colbert"):
            return {_OUTPUT[family]: exported}
        if family == "dense":
            dims = _dense_dims(source, options)
        elif family == "splade":
            dims = _splade_dims(source)
        elif family == "colbert":
            dims = _colbert_dims(source, options)
        elif family == "bge-m3":
            return _bge_m3_dims(source.path)
        else:
            return {}
    except (SieError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, pickle.PickleError):
        return {}
    return {_OUTPUT[family]: dims} if dims else {}


_OUTPUT = {"dense": "dense", "splade": "sparse", "colbert": "multivector"}


def _dense_dims(source: ModelSource, options: Mapping[str, Any]) -> int | None:
    """A sentence-transformers folder: its last Dense layer, else its Pooling, else the transformer's hidden size."""
    folder = source.path
    modules = _json(folder / "modules.json") or []
    dims: int | None = None
    for module in reversed(modules):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / str(module.get("path", ""))
        if kind == "Dense":
            if source.backend == "onnx":
                return None  # whether the graph includes the projection is not written down anywhere
            dims = int(_json(path / "config.json")["out_features"])
            break
        if kind == "Pooling":
            dims = _pooling_dims(_json(path / "config.json"))
            break
    else:
        if modules:
            return None  # no pooling (static embeddings, custom modules): not read here
        dims = _hidden_size(folder)  # sentence-transformers adds mean pooling to a bare transformer
    truncate = options.get("truncate_dim")
    if isinstance(truncate, int) and truncate > 0 and dims:
        dims = min(dims, truncate)
    return dims


def _pooling_dims(config: Mapping[str, Any]) -> int:
    """Token dimension times the number of pooling modes (concatenated), in either config format."""
    width = int(config.get("embedding_dimension") or config["word_embedding_dimension"])
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        modes = 1
    elif isinstance(mode, (list, tuple)):
        modes = len(mode)
    else:  # sentence-transformers < 6: one boolean per mode, mean when none is set
        modes = sum(1 for key in _POOLING_MODES if config.get(key)) or 1
    return width * modes


def _splade_dims(source: ModelSource) -> int | None:
    """The document side's vocabulary: its masked-LM ``vocab_size``."""
    document = read_splade_layout(source.path).document
    if document.kind != "mlm":
        return None
    vocab = _json(document.folder / "config.json").get("vocab_size")
    return int(vocab) if isinstance(vocab, int) else None


def _colbert_dims(source: ModelSource, options: Mapping[str, Any]) -> int | None:
    """``token_dims`` when set, else the last projection's output size, else the transformer's hidden size."""
    files = read_colbert_files(source.path, dict(options))
    if files.settings.token_dims:
        return int(files.settings.token_dims)
    if source.backend == "onnx":
        return None  # the graph's output, known once it runs
    if files.stanford:
        shape = _tensor_shapes(source.path).get("linear.weight")
        return int(shape[0]) if shape else None
    if files.dense:
        return int(_json(files.dense[-1] / "config.json")["out_features"])
    return _hidden_size(files.transformer)


def _bge_m3_dims(folder: Path) -> dict[str, int]:
    """Dense: the hidden size; sparse: the vocabulary; multivector: ``colbert_linear.pt``'s output size."""
    config = _json(folder / "config.json")
    dims = {"dense": int(config["hidden_size"])}
    vocab = _tokenizer_size(folder) or config.get("vocab_size")
    if isinstance(vocab, int):
        dims["sparse"] = vocab
    shape = _pickled_shapes(folder / "colbert_linear.pt").get("weight")
    if shape:
        dims["multivector"] = int(shape[0])
    return dims


def _hidden_size(folder: Path) -> int | None:
    hidden = _json(folder / "config.json").get("hidden_size")
    return int(hidden) if isinstance(hidden, int) else None


def _tokenizer_size(folder: Path) -> int | None:
    """``len(tokenizer)``: the highest token id in ``tokenizer.json`` (vocabulary and added tokens) plus one."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data.get("model", {}).get("vocab")
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab or [])))
    ids += [int(t["id"]) for t in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a folder's weights: a safetensors header, else a torch file's pickled index."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = folder / name
        if path.is_file():
            return _safetensors_shapes(path) if path.suffix == ".safetensors" else _pickled_shapes(path)
    return {}


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > _MAX_HEADER:
            return {}
        header = json.loads(handle.read(length))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


class _ShapeUnpickler(pickle.Unpickler):
    """Reads a ``torch.save`` index without torch: every tensor becomes its shape; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _shape_of
        if module == "torch" and name.endswith("Storage"):
            return name  # only named in the storage's persistent id
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain state dict")

    def persistent_load(self, pid: Any) -> Any:
        return None  # the tensor data itself is never read


def _shape_of(storage: Any, offset: Any, size: Any, *rest: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in size)


def _pickled_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes in a zip-format ``torch.save`` file of a state dict (its ``data.pkl`` only)."""
    with zipfile.ZipFile(path) as archive:
        index = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if index is None:
            return {}
        with archive.open(index) as handle:
            state = _ShapeUnpickler(handle).load()
    if not isinstance(state, Mapping):
        return {}
    return {str(k): v for k, v in state.items() if isinstance(v, tuple)}
