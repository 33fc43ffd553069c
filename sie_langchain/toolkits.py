"""SIEToolkit: search, rerank and extract tools for an agent, configured by a task -> model table."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.tools import BaseTool, BaseToolkit
from pydantic import ConfigDict, Field, model_validator

from sie_core import InvalidInputError

from ._engine import SIEEngineClient
from .retrievers import SIERetriever
from .tools import SIEExtractor, SIERerankTool, SIESearchTool

__all__ = ["SIEToolkit"]

#: Engine function -> the task name it has in the default table.
_DEFAULT_TASKS = {"encode": "retrieve", "score": "rerank", "extract": "extract"}
_TASK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class SIEToolkit(SIEEngineClient, BaseToolkit):
    """Tools that let an agent pick the model per task: ``sie_search``, ``sie_rerank``, ``sie_extract``.

    Configure it with the task -> model table of ``examples/agents/route_tasks.py``; a task may list several
    models, and the agent then chooses among them (the tool's ``model`` argument is an enum of those ids,
    each described in one line)::

        SIEToolkit(
            tasks={
                "retrieve": ("encode", "sentence-transformers/all-MiniLM-L6-v2"),
                "rerank": ("score", "cross-encoder/ms-marco-MiniLM-L12-v2", "BAAI/bge-reranker-v2-m3"),
                "extract": ("extract", "urchade/gliner_multi-v2.1", "urchade/gliner_multi_pii-v1"),
            },
            retriever=SIERetriever.from_texts(texts),
        )

    Each entry is ``(function, model, ...)`` or ``(function, [model, ...])`` with function ``encode``
    (a search tool over ``retriever``'s corpus), ``score`` (rerank) or ``extract``. The task ``retrieve``
    gives the tool ``sie_search``; any other task ``x`` gives ``sie_x`` (so two extract tasks — say
    ``extract`` and ``pii`` — give two tools).

    Args:
        tasks: The task -> (function, models) table; None: one tool per function with the engine's
            default model (``retrieve`` only when a retriever is given).
        retriever: The corpus the search tool searches.
        labels: Default entity types of extract tools.
        threshold: Minimum confidence of extract tools.
        top_k: Default number of passages the rerank tool keeps.
        engine: An existing :class:`sie_core.Engine`; by default the process-wide shared one.
        base_url: URL of a remote SIE-compatible server instead of in-process models.
        api_key: Bearer token for ``base_url``.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    tasks: dict[str, tuple[Any, ...]] | None = None
    """Task -> (engine function, model, ...)."""
    retriever: SIERetriever | None = None
    """The corpus searched by the search tool."""
    labels: list[str] = Field(default_factory=lambda: ["person", "organization", "location"])
    """Default entity types of extract tools."""
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """Minimum confidence of extract tools."""
    top_k: int | None = Field(default=None, gt=0)
    """Default number of passages the rerank tool keeps."""

    @model_validator(mode="after")
    def _check_tasks(self) -> SIEToolkit:
        table = self.table(check_only=True)
        for task, (function, models) in table.items():
            if function == "encode" and self.retriever is None:
                raise InvalidInputError(
                    f"task {task!r} (encode) searches a corpus; pass retriever=SIERetriever.from_texts(...) "
                    "or leave the task out"
                )
            over_store = self.retriever is not None and self.retriever.vectorstore is not None
            if function == "encode" and over_store and len(models) > 1:
                raise InvalidInputError(
                    f"task {task!r}: a retriever over a vectorstore searches with the store's own embeddings, "
                    f"so the agent cannot choose among {len(models)} encode models; name one"
                )
        return self

    def table(self, check_only: bool = False) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The normalized task table: task -> (engine function, model ids)."""
        if self.tasks is None:
            if check_only:
                return {}
            defaults = {"rerank": "score", "extract": "extract"}
            if self.retriever is not None:
                defaults = {"retrieve": "encode", **defaults}
            table: dict[str, tuple[str, tuple[str, ...]]] = {}
            for task, function in defaults.items():
                model = self.retriever.model if function == "encode" and self.retriever is not None else None
                table[task] = (function, (model or self.client.default_model(function),))
            return table
        out: dict[str, tuple[str, tuple[str, ...]]] = {}
        for task, entry in self.tasks.items():
            if not isinstance(task, str) or not _TASK_NAME.match(task):
                raise InvalidInputError(f"task name {task!r} must be 1-40 letters, digits, '_' or '-'")
            entry = tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)
            if not entry or entry[0] not in _DEFAULT_TASKS:
                raise InvalidInputError(
                    f"task {task!r}: the entry must start with the engine function (encode, score or extract), "
                    f"got {entry!r}"
                )
            function, rest = entry[0], entry[1:]
            models = tuple(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else tuple(rest)
            if not models or not all(isinstance(m, str) and m.strip() for m in models):
                raise InvalidInputError(f"task {task!r}: name at least one model id after {function!r}, got {entry!r}")
            out[task] = (function, models)
        return out

    def get_tools(self) -> list[BaseTool]:
        """One tool per task, in table order; each offers the task's models as an enum ``model`` argument."""
        tools: list[BaseTool] = []
        for task, (function, models) in self.table().items():
            name = "sie_search" if task == "retrieve" else f"sie_{task}"
            tool: BaseTool
            if function == "encode":
                assert self.retriever is not None
                tool = SIESearchTool(
                    name=name,
                    retriever=self.retriever,
                    models=None if self.retriever.vectorstore is not None else list(models),
                )
            elif function == "score":
                tool = SIERerankTool(name=name, engine=self.client, models=list(models), top_k=self.top_k)
            else:
                tool = SIEExtractor(
                    name=name, engine=self.client, models=list(models), labels=self.labels, threshold=self.threshold
                )
            if _DEFAULT_TASKS[function] != task:
                tool.description = f"({task}) {tool.description}"
            tools.append(tool)
        return tools
