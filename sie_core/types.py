"""Input types shared by the engine and its transports."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = ["Item", "ItemLike", "OutputDtype", "TASKS", "Task"]

Task = Literal["encode", "score", "extract"]
TASKS: tuple[Task, ...] = ("encode", "score", "extract")

OutputDtype = Literal["float32", "float16", "int8", "binary"]
OUTPUT_DTYPES: tuple[str, ...] = ("float32", "float16", "int8", "binary")


class Item(TypedDict, total=False):
    """One input, shaped like SIE's ``Item`` so code written for SIE's client works unchanged.

    ``Item(text="...")`` builds a plain dict; a dict from ``sie_sdk.types.Item`` is accepted too.

    Attributes:
        id: Optional caller id, echoed back in the result.
        text: The text to encode, score or extract from.
        metadata: Free-form caller data; ignored by the engine.
    """

    id: str
    text: str
    metadata: dict[str, Any]


ItemLike = Item | str
