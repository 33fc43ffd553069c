"""The limits of one engine's configuration, checked on every typed request before it reaches a backend."""

from __future__ import annotations

from typing import Any

from .config import EngineConfig
from .errors import InvalidInputError
from .requests import EncodeRequest, ExtractRequest, ScoreRequest
from .validation import _check_encodable, _check_text

__all__ = ["check_limits"]


def check_limits(request: Any, config: EngineConfig) -> None:
    """Items per call, text length and content, labels per call.

    Raises:
        InvalidInputError: A limit is exceeded or a text is empty or not valid Unicode; the message names
            the item and the limit.
    """
    count = len(request.items)
    if count > config.max_items_per_call:
        raise InvalidInputError(
            f"items has {count:,} entries; at most {config.max_items_per_call:,} are allowed per call "
            "(send several calls, or raise max_items_per_call)"
        )
    for i, item in enumerate(request.items):
        _check_text(item.text, f"items[{i}]", config)
    if isinstance(request, ScoreRequest):
        _check_text(request.query.text, "query", config)
    if isinstance(request, EncodeRequest) and request.instruction is not None:
        _check_encodable(request.instruction, "instruction")
    if isinstance(request, ExtractRequest):
        for name in ("labels", "relation_labels", "classes"):
            values = getattr(request, name) or []
            if len(values) > config.max_labels:
                raise InvalidInputError(f"{len(values)} {name} given; at most {config.max_labels} are allowed per call")
            for i, label in enumerate(values):
                if not label.strip():
                    raise InvalidInputError(f"{name}[{i}] is {label!r}; every label must be a non-empty string")
                _check_encodable(label, f"{name}[{i}]")
