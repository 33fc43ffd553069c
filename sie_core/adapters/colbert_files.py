"""What a ColBERT model folder says about its encoding, read without torch (PyLate's settings and defaults).

Three layouts are read: a PyLate folder (``modules.json``: a transformer and ``Dense`` projection layers;
``config_sentence_transformers.json``: prefixes, query and document lengths, query expansion, skip-list),
a Stanford ColBERT checkpoint (``HF_ColBERT`` in ``config.json``, the projection as ``linear.weight`` beside the
encoder's weights, settings in ``artifact.metadata``), and an ``export-onnx`` folder (its ``sie_export.json``).
A catalog entry's ``options`` override any setting (e.g. for a packaged encoder used without markers).
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

__all__ = ["ColbertFiles", "ColbertSettings", "marker_ids", "read_colbert_files"]

#: Catalog ``options`` a ColBERT entry may set (anything else there is for the ONNX session).
SETTING_NAMES = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "do_query_expansion",
    "attend_to_expansion_tokens",
    "skiplist_words",
    "lowercase",
    "token_dims",
)


@dataclass(frozen=True)
class ColbertSettings:
    """How texts become token vectors, with PyLate's defaults.

    Attributes:
        query_prefix: Marker token put after the first token of queries (``[Q] ``; empty for none).
        document_prefix: Marker token for documents (``[D] ``; empty for none).
        query_length: Tokens per query (marker included); with expansion, queries are padded to it with mask tokens.
        document_length: Most tokens per document (marker included).
        do_query_expansion: Pad queries with mask tokens to ``query_length`` and keep their vectors.
        attend_to_expansion_tokens: Whether the expansion tokens are attended to in the transformer.
        skiplist_words: Tokens whose document vectors are dropped (punctuation by default).
        lowercase: Lowercase texts before tokenizing (``do_lower_case``).
        token_dims: Keep only the first ``token_dims`` of each token state (encoders without a projection).
        prompts: Named prompts from ``config_sentence_transformers.json``.
    """

    query_prefix: str = "[Q] "
    document_prefix: str = "[D] "
    query_length: int = 32
    document_length: int = 180
    do_query_expansion: bool = True
    attend_to_expansion_tokens: bool = False
    skiplist_words: tuple[str, ...] = tuple(string.punctuation)
    lowercase: bool = False
    token_dims: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-able data (for an export manifest)."""
        data = asdict(self)
        data["skiplist_words"] = list(self.skiplist_words)
        return data


@dataclass(frozen=True)
class ColbertFiles:
    """A ColBERT folder's parts.

    Attributes:
        settings: How texts are encoded.
        transformer: The folder of the transformer (weights, config, tokenizer).
        dense: The projection layers' folders, in order (PyLate ``Dense`` modules).
        stanford: The projection is the ``linear.weight`` of a Stanford checkpoint in ``transformer``.
    """

    settings: ColbertSettings
    transformer: Path
    dense: tuple[Path, ...] = ()
    stanford: bool = False


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None


def _kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _checked(settings: ColbertSettings, where: str) -> ColbertSettings:
    for name in ("query_length", "document_length"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ModelLoadError(f"{where}: {name} must be an integer of at least 2, got {value!r}")
    if settings.token_dims is not None and (not isinstance(settings.token_dims, int) or settings.token_dims < 1):
        raise ModelLoadError(f"{where}: token_dims must be a positive integer, got {settings.token_dims!r}")
    if not settings.do_query_expansion and settings.attend_to_expansion_tokens:
        settings = replace(settings, attend_to_expansion_tokens=False)  # as PyLate: nothing to attend to
    return settings


def _updates(data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(ColbertSettings)}
    out = {k: v for k, v in data.items() if k in known and v is not None}
    if "skiplist_words" in out:
        out["skiplist_words"] = tuple(str(w) for w in out["skiplist_words"])
    return out


def read_colbert_files(
    root: Path, options: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None
) -> ColbertFiles:
    """Read a ColBERT folder's settings and parts.

    Args:
        root: The model folder.
        options: The catalog entry's ``options`` (settings named in :data:`SETTING_NAMES` win).
        manifest: An ``export-onnx`` manifest, whose ``colbert`` entry holds the exported settings.

    Raises:
        ModelLoadError: The folder is not a ColBERT model this engine runs, or a setting is out of range.
    """
    where = f"model folder {root}"
    overrides = _updates({k: v for k, v in (options or {}).items() if k in SETTING_NAMES})
    if manifest and isinstance(manifest.get("colbert"), dict):
        settings = replace(ColbertSettings(), **_updates(manifest["colbert"]))
        return ColbertFiles(_checked(replace(settings, **overrides), where), root)
    config = _json(root / "config.json")
    st_model = _json(root / "config_sentence_transformers.json")
    found: dict[str, Any] = {}
    stanford = "HF_ColBERT" in (config.get("architectures") or [])
    transformer, dense = root, []
    if stanford:
        found.update(query_prefix="[unused0]", document_prefix="[unused1]")
        metadata = _json(root / "artifact.metadata")
        renames = {
            "query_token_id": "query_prefix",
            "doc_token_id": "document_prefix",
            "query_maxlen": "query_length",
            "doc_maxlen": "document_length",
            "attend_to_mask_tokens": "attend_to_expansion_tokens",
        }
        found.update({new: metadata[old] for old, new in renames.items() if metadata.get(old) is not None})
    elif not (root / "modules.json").is_file() and "token_dims" in overrides:
        pass  # a bare encoder used without a projection: the first token_dims of each token state
    else:
        modules = _json(root / "modules.json") or []
        kinds = [_kind(m) for m in modules]
        if not kinds or kinds[0] != "Transformer" or any(k != "Dense" for k in kinds[1:]):
            raise ModelLoadError(
                f"{where}: modules {' -> '.join(kinds) or 'none'} are not a ColBERT model; the colbert family runs "
                "a PyLate folder (Transformer -> Dense) or a Stanford ColBERT checkpoint (HF_ColBERT)"
            )
        transformer = root / str(modules[0].get("path", ""))
        dense = [root / str(m.get("path", "")) for m in modules[1:]]
        if not dense and "token_dims" not in overrides:
            raise ModelLoadError(
                f"{where} has no projection (Dense) layer; PyLate would add an untrained one. Use a trained "
                "ColBERT model, or set options.token_dims to use the encoder's first dimensions"
            )
    found.update(_updates(st_model))
    found["prompts"] = {str(k): str(v) for k, v in (st_model.get("prompts") or {}).items() if v}
    lower = _json(transformer / "sentence_bert_config.json").get("do_lower_case")
    if lower is not None:
        found["lowercase"] = bool(lower)
    settings = replace(replace(ColbertSettings(), **found), **overrides)
    return ColbertFiles(_checked(settings, where), transformer, tuple(dense), stanford)


def marker_ids(
    files: ColbertFiles, vocab: dict[str, int], unk_id: int | None
) -> tuple[int | None, int | None, list[int]]:
    """(query marker id, document marker id, skip-list ids) as PyLate computes them from the tokenizer.

    Raises:
        ModelLoadError: A marker is not in the vocabulary (PyLate would add it with untrained weights).
    """
    ids: list[int | None] = []
    for marker in (files.settings.query_prefix, files.settings.document_prefix):
        if not marker:
            ids.append(None)
            continue
        if marker not in vocab:
            raise ModelLoadError(
                f"the marker token {marker!r} is not in the tokenizer's vocabulary; this folder is not a trained "
                "ColBERT model (set query_prefix/document_prefix in its catalog options)"
            )
        ids.append(vocab[marker])
    skip = [vocab.get(w, unk_id) for w in files.settings.skiplist_words]  # unknown words map to [UNK], as PyLate
    return ids[0], ids[1], sorted({i for i in skip if i is not None})
