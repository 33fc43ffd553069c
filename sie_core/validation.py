"""Checking call arguments before any work is queued; every message says what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .config import EngineConfig
from .errors import InvalidInputError
from .types import OUTPUT_DTYPES

__all__ = [
    "check_dims",
    "check_labels",
    "check_output_dtype",
    "check_threshold",
    "check_top_k",
    "normalize_items",
    "normalize_query",
]


def _describe(value: Any) -> str:
    return type(value).__name__


def _text_of(item: Any, where: str) -> tuple[str, str | None]:
    text: Any
    item_id: Any = None
    if isinstance(item, str):
        text = item
    elif isinstance(item, dict):
        text = item.get("text")
        item_id = item.get("id")
        if text is None:
            keys = ", ".join(sorted(map(str, item))) or "none"
            raise InvalidInputError(f"{where} has no 'text' (keys: {keys}); this engine reads text items only")
        if item_id is not None and not isinstance(item_id, str):
            raise InvalidInputError(f"{where} has an id of type {_describe(item_id)}; ids must be strings")
    else:
        raise InvalidInputError(f"{where} is of type {_describe(item)}; expected a string or an Item with 'text'")
    if not isinstance(text, str):
        raise InvalidInputError(f"{where} text is of type {_describe(text)}; expected a string")
    return text, item_id


def _check_text(text: str, where: str, config: EngineConfig) -> None:
    if not text.strip():
        raise InvalidInputError(f"{where} is empty; every text needs at least one non-space character")
    if len(text) > config.max_text_chars:
        raise InvalidInputError(
            f"{where} has {len(text):,} characters; at most {config.max_text_chars:,} are allowed per text "
            "(split it, or raise max_text_chars)"
        )
    _check_encodable(text, where)


def _check_encodable(text: str, where: str) -> None:
    # A lone surrogate passes every str check but makes tokenizers raise mid-batch, failing everyone who
    # shared that batch. Encoding is one fast C pass; the position is only looked up when it fails.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where} contains a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start:,}; "
            "texts must be valid Unicode (UTF-8 encodable)"
        ) from None


def normalize_items(
    items: Any, config: EngineConfig, *, name: str = "items"
) -> tuple[list[str], list[str | None], bool]:
    """Check items (one, or a list) and return (texts, ids, was_single).

    Raises:
        InvalidInputError: Not a string/Item or list of them, empty, too many, or a text is empty or too long.
    """
    single = isinstance(items, (str, dict))
    if single:
        seq: Sequence[Any] = [items]
    elif isinstance(items, (list, tuple)):
        seq = items
    else:
        raise InvalidInputError(f"{name} is of type {_describe(items)}; pass a string, an Item, or a list of them")
    if not seq:
        raise InvalidInputError(f"{name} is empty; pass at least one text")
    if len(seq) > config.max_items_per_call:
        raise InvalidInputError(
            f"{name} has {len(seq):,} entries; at most {config.max_items_per_call:,} are allowed per call "
            "(send several calls, or raise max_items_per_call)"
        )
    texts: list[str] = []
    ids: list[str | None] = []
    for i, item in enumerate(seq):
        where = name if single else f"{name}[{i}]"
        text, item_id = _text_of(item, where)
        _check_text(text, where, config)
        texts.append(text)
        ids.append(item_id)
    return texts, ids, single


def normalize_query(query: Any, config: EngineConfig) -> tuple[str, str | None]:
    """Check a score query (a string or one Item)."""
    if isinstance(query, (list, tuple)):
        raise InvalidInputError("query must be one string or Item, not a list")
    text, item_id = _text_of(query, "query")
    _check_text(text, "query", config)
    return text, item_id


def check_output_dtype(output_dtype: Any) -> str:
    """Check ``output_dtype``."""
    if output_dtype not in OUTPUT_DTYPES:
        raise InvalidInputError(
            f"output_dtype {output_dtype!r} is not supported; use one of {', '.join(OUTPUT_DTYPES)}"
        )
    return str(output_dtype)


def check_dims(dims: Any, model_dims: int | None = None, model: str = "the model") -> int | None:
    """Check ``dims`` (None, or 1..model_dims)."""
    if dims is None:
        return None
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise InvalidInputError(f"dims must be a positive integer, got {dims!r}")
    if model_dims is not None and dims > model_dims:
        raise InvalidInputError(
            f"dims={dims} is larger than {model}'s {model_dims} dimensions; use a value from 1 to {model_dims}"
        )
    return dims


def check_top_k(top_k: Any) -> int | None:
    """Check ``top_k`` (None or a positive integer)."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be a positive integer or None, got {top_k!r}")
    return top_k


def check_threshold(threshold: Any) -> float:
    """Check an extraction ``threshold`` (a number from 0 to 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise InvalidInputError(f"threshold must be a number from 0 to 1, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(f"threshold must be between 0 and 1, got {threshold!r}")
    return float(threshold)


def check_labels(labels: Any, config: EngineConfig) -> list[str]:
    """Check extraction ``labels`` (a non-empty list of distinct non-empty strings)."""
    if isinstance(labels, str):
        labels = [labels]
    if labels is None or not isinstance(labels, (list, tuple)) or not labels:
        raise InvalidInputError(
            "labels are missing; name at least one entity type to extract, e.g. ['person', 'organization']"
        )
    if len(labels) > config.max_labels:
        raise InvalidInputError(f"{len(labels)} labels given; at most {config.max_labels} are allowed per call")
    out: list[str] = []
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise InvalidInputError(f"labels[{i}] is {label!r}; every label must be a non-empty string")
        if len(label) > 200:
            raise InvalidInputError(f"labels[{i}] has {len(label)} characters; at most 200 are allowed")
        if label not in out:
            out.append(label)
    return out
