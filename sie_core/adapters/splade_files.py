"""What a SPLADE model folder says about each side (query, document), read without torch.

A sentence-transformers ``SparseEncoder`` folder is a masked-LM transformer followed by ``SpladePooling``
(``modules.json``), or a ``Router`` whose ``query`` and ``document`` routes differ: inference-free models
encode queries with ``SparseStaticEmbedding`` (one learned weight per vocabulary token, no transformer) and
documents with the masked LM. A bare ``*ForMaskedLM`` folder is read as ``SparseEncoder`` reads it: max pooling
over ``log1p(relu(logits))``. An ``export-onnx`` folder states all of it in its ``sie_export.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError

__all__ = ["STATIC_WEIGHTS", "SpladeLayout", "SpladeSide", "read_splade_layout", "static_weights"]

#: The static query weights as an export writes them (numpy, so the ONNX backend needs neither torch nor safetensors).
STATIC_WEIGHTS = "weights.npy"
_POOLINGS = ("max", "sum")
_ACTIVATIONS = ("relu", "log1p_relu")


@dataclass(frozen=True)
class SpladeSide:
    """How one side (queries or documents) is encoded.

    Attributes:
        kind: ``mlm`` (masked-LM logits, activation, pooling over tokens) or ``static`` (a weight per token).
        folder: The folder of that side's transformer (mlm) or static weight table and tokenizer (static).
        pooling: ``max`` or ``sum`` over the attended tokens (mlm).
        activation: ``relu`` (``log1p(relu(x))``) or ``log1p_relu`` (``log1p(log1p(relu(x)))``, opensearch).
        max_length: Token limit from the folder's ``sentence_bert_config.json``; None for the tokenizer's own.
        lowercase: Whether texts are lowercased before tokenizing (``do_lower_case``).
    """

    kind: str
    folder: Path
    pooling: str = "max"
    activation: str = "relu"
    max_length: int | None = None
    lowercase: bool = False

    def describe(self, root: Path) -> dict[str, Any]:
        """The side as JSON-able data, its folder relative to ``root`` (for an export manifest)."""
        data = asdict(self)
        data["folder"] = str(self.folder.relative_to(root)) if self.folder != root else ""
        return data


@dataclass(frozen=True)
class SpladeLayout:
    """Both sides of a SPLADE model plus its prompts and active-dimension cap.

    Attributes:
        query: How queries are encoded (``is_query=True``).
        document: How documents are encoded.
        prompts: Named prompts (``query``, ``document``, ...) from ``config_sentence_transformers.json``.
        max_active_dims: Keep only this many heaviest terms per text (``SparseEncoder.max_active_dims``).
    """

    query: SpladeSide
    document: SpladeSide
    prompts: dict[str, str] = field(default_factory=dict)
    max_active_dims: int | None = None

    @property
    def inference_free(self) -> bool:
        """Whether queries are encoded without a forward pass (a static weight per token)."""
        return self.query.kind == "static"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None


def _kind(type_name: str) -> str:
    return str(type_name).rsplit(".", 1)[-1]


def _side_from_modules(root: Path, modules: list[tuple[str, Path]], where: str) -> SpladeSide:
    """One side from its modules: ``[(class name, folder)]`` in order."""
    kinds = [k for k, _ in modules]
    if kinds == ["SparseStaticEmbedding"]:
        return SpladeSide(kind="static", folder=modules[0][1])
    if len(kinds) == 2 and kinds[0] in ("Transformer", "MLMTransformer") and kinds[1] == "SpladePooling":
        pooling = _json(modules[1][1] / "config.json")
        st_config = _json(modules[0][1] / "sentence_bert_config.json")
        task = st_config.get("transformer_task", "fill-mask")
        if kinds[0] == "Transformer" and task != "fill-mask":
            raise ModelLoadError(f"{where}: the transformer's task is {task!r}; SPLADE needs fill-mask logits")
        strategy = pooling.get("pooling_strategy", "max")
        activation = pooling.get("activation_function", "relu")
        if strategy not in _POOLINGS or activation not in _ACTIVATIONS:
            raise ModelLoadError(
                f"{where}: SpladePooling({strategy!r}, {activation!r}) is not supported; "
                f"pooling is one of {', '.join(_POOLINGS)} and activation one of {', '.join(_ACTIVATIONS)}"
            )
        limit = st_config.get("max_seq_length")
        return SpladeSide(
            kind="mlm",
            folder=modules[0][1],
            pooling=strategy,
            activation=activation,
            max_length=int(limit) if isinstance(limit, int) and limit > 0 else None,
            lowercase=bool(st_config.get("do_lower_case", False)),
        )
    raise ModelLoadError(
        f"{where}: modules {' -> '.join(kinds) or 'none'} are not a SPLADE encoder; the splade family runs "
        "Transformer(fill-mask) -> SpladePooling, or SparseStaticEmbedding (inference-free queries)"
    )


def _router_sides(root: Path, folder: Path) -> tuple[SpladeSide, SpladeSide]:
    config = _json(folder / "router_config.json") or _json(folder / "config.json")
    types: dict[str, str] = config.get("types") or {}
    structure: dict[str, list[str]] = config.get("structure") or {}
    default = (config.get("parameters") or {}).get("default_route") or next(iter(structure), None)

    def side(route: str) -> SpladeSide:
        name = route if route in structure else default
        if name is None or name not in structure:
            raise ModelLoadError(f"model folder {root}: its Router has no {route!r} route and no default route")
        modules = [(_kind(types.get(mid, "")), folder / mid) for mid in structure[name]]
        return _side_from_modules(root, modules, f"model folder {root}, route {name!r}")

    return side("query"), side("document")


def read_splade_layout(root: Path, manifest: dict[str, Any] | None = None) -> SpladeLayout:
    """Read how a SPLADE folder encodes queries and documents.

    Args:
        root: The model folder.
        manifest: An ``export-onnx`` manifest; its ``splade`` entry wins over the folder's module files.

    Raises:
        ModelLoadError: The folder is not a SPLADE encoder this engine runs.
    """
    if manifest and isinstance(manifest.get("splade"), dict):
        data = manifest["splade"]
        sides = {}
        for name in ("query", "document"):
            entry = dict(data[name])
            entry["folder"] = root / entry.get("folder", "")
            sides[name] = SpladeSide(**entry)
        return SpladeLayout(
            sides["query"],
            sides["document"],
            dict(data.get("prompts") or {}),
            data.get("max_active_dims"),
        )
    st_model = _json(root / "config_sentence_transformers.json")
    prompts = {str(k): str(v) for k, v in (st_model.get("prompts") or {}).items() if v}
    active = st_model.get("max_active_dims")
    max_active = int(active) if isinstance(active, int) and active > 0 else None
    listed = _json(root / "modules.json")
    if not listed:
        config = _json(root / "config.json")
        if not any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or []):
            raise ModelLoadError(
                f"model folder {root} has no modules.json and is not a masked-LM model (architectures "
                f"{config.get('architectures')}); the splade family needs masked-LM logits"
            )
        side = SpladeSide(kind="mlm", folder=root)
        return SpladeLayout(side, side, prompts, max_active)
    modules = [(_kind(m.get("type", "")), root / str(m.get("path", ""))) for m in listed]
    if len(modules) == 1 and modules[0][0] == "Router":
        query, document = _router_sides(root, modules[0][1])
    else:
        query = document = _side_from_modules(root, modules, f"model folder {root}")
    return SpladeLayout(query, document, prompts, max_active)


def static_weights(folder: Path, vocab: dict[str, int], size: int) -> np.ndarray:
    """The per-token weights of a ``SparseStaticEmbedding`` folder.

    Read from ``weights.npy`` (an export), ``model.safetensors`` or ``pytorch_model.bin`` (key ``weight``), or an
    ``idf.json`` of token -> weight (the file its ``config.json`` names), as ``SparseStaticEmbedding.load`` does.

    Raises:
        ModelLoadError: None of those files is there.
    """
    if (folder / STATIC_WEIGHTS).is_file():
        return np.load(folder / STATIC_WEIGHTS).astype(np.float32)
    if (folder / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        return np.asarray(load_file(str(folder / "model.safetensors"))["weight"], dtype=np.float32)
    if (folder / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
        return np.asarray(state["weight"].float().numpy(), dtype=np.float32)
    idf_file = folder / str(_json(folder / "config.json").get("path") or "idf.json")
    if not idf_file.is_file():
        raise ModelLoadError(f"{folder}: no static token weights ({STATIC_WEIGHTS}, model.safetensors or idf.json)")
    weights = np.zeros(size, dtype=np.float32)
    for token, weight in _json(idf_file).items():
        index = vocab.get(token)
        if index is not None:
            weights[index] = weight
    return weights
