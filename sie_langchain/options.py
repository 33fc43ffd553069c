"""Which engine options each class offers, and why it leaves the others out.

Every option a class offers is declared with the alias of :mod:`sie_core.requests` (same type, bounds and
description as the engine's request, the MCP tools and the HTTP API); the tables below are the only
exceptions, and ``tests/test_options_defined_once.py`` holds the classes to them.
"""

from __future__ import annotations

__all__ = ["NARROWED", "OFFERED", "OMITTED"]

#: Class -> the request options it offers as fields.
OFFERED: dict[str, tuple[str, ...]] = {
    "SIEEmbeddings": ("instruction", "normalize", "dims", "output_dtype"),
    "SIESparseEncoder": (),
    "SIEReranker": ("top_k",),
    "SIERerankTool": ("top_k",),
    "SIEExtractor": ("labels", "relation_labels", "classes", "threshold"),
}

#: Class -> option -> why the class does not offer it as a field.
OMITTED: dict[str, dict[str, str]] = {
    "SIEEmbeddings": {
        "is_query": "embed_query applies the model's query prompt, embed_documents its document prompt",
        "output_types": "a LangChain Embeddings returns one dense vector per text",
    },
    "SIESparseEncoder": {
        "is_query": "encode_queries uses the model's query side, encode_documents its document side",
        "output_types": "always sparse: the class returns Pinecone's {indices, values} vectors",
        "instruction": "sparse (SPLADE) models take no instruction",
        "normalize": "sparse term weights are not normalized (the dot product is the relevance)",
        "dims": "a sparse vector's length is the vocabulary; only its non-zero terms are returned",
        "output_dtype": "sparse weights are float32 (returned as Python floats)",
    },
    "SIEReranker": {},
    "SIERerankTool": {},
    "SIEExtractor": {
        "flat_ner": "passed in options={'flat_ner': ...}, as SIE's own SIEExtractor takes it",
        "multi_label": "passed in options={'multi_label': ...}, as SIE's own SIEExtractor takes it",
        "output_schema": "passed in options={'output_schema': {...}}: a LangChain tool's output_schema is its own "
        "result schema",
    },
}

#: (class, option) -> how the class narrows the request's type, and why.
NARROWED: dict[tuple[str, str], str] = {
    ("SIEEmbeddings", "output_dtype"): "float32, float16 or int8 only: LangChain vectors are lists of floats",
    ("SIEExtractor", "labels"): "a default list for calls that name none (the agent may pass labels per call)",
}
