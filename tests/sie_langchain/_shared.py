"""State the LangChain standard suites read from properties (they cannot take pytest fixtures).

``conftest.lc_engine`` fills it once per session.
"""

from __future__ import annotations

from typing import Any

from sie_core import Engine

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY_ENCODER = "tiny/encoder"
TINY_RERANKER = "tiny/cross-encoder"
TINY_RERANKER_B = "tiny/cross-encoder-b"
TINY_EXTRACTOR = "tiny/gliner"
REAL_RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"

CORPUS = [
    "Invoice 4471 from Acme GmbH is due on 30 June; the amount is 12,400 EUR.",
    "The Berlin office reported revenue of 3.2 million EUR in the second quarter.",
    "Our cafeteria serves vegetarian lunch on Fridays.",
    "Acme GmbH moved its headquarters from Munich to Berlin in 2021.",
    "Alice Smith works for Globex Corporation in Paris.",
    "The quick brown fox jumps over the lazy dog.",
    "Payment terms: net 30 days after the invoice date.",
    "Machine learning models turn text into vectors.",
]

STATE: dict[str, Any] = {}


def engine() -> Engine:
    """The session's engine (real MiniLM by catalog id, tiny models as catalog additions)."""
    return STATE["engine"]  # type: ignore[no-any-return]


def toolkit() -> Any:
    """One SIEToolkit per session (its retriever embeds the corpus once), several models per task."""
    if "toolkit" not in STATE:
        from sie_langchain import SIERetriever, SIEToolkit

        retriever = SIERetriever.from_texts(CORPUS, model=MINILM, engine=engine(), k=3)
        STATE["toolkit"] = SIEToolkit(
            tasks={
                "retrieve": ("encode", MINILM, TINY_ENCODER),
                "rerank": ("score", [TINY_RERANKER, TINY_RERANKER_B]),
                "extract": ("extract", TINY_EXTRACTOR),
            },
            retriever=retriever,
            engine=engine(),
            labels=["person", "organization", "location"],
            threshold=0.3,
        )
    return STATE["toolkit"]


def toolkit_tool(name: str) -> Any:
    """The toolkit's tool called ``name``."""
    return next(t for t in toolkit().get_tools() if t.name == name)
