"""An independent client: the official MCP Inspector CLI (npm @modelcontextprotocol/inspector) on both transports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import HttpServer, model_flags, run_inspector

pytestmark = pytest.mark.slow


def stdio_target(tiny_models: dict[str, Path]) -> list[str]:
    return [sys.executable, "-m", "sie_mcp", *model_flags(tiny_models)]


def test_inspector_lists_tools_over_stdio_with_portable_schemas(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = run_inspector([*stdio_target(tiny_models), "--method", "tools/list", "--strict"], tmp_path)
    assert code == 0, err
    tools = {t["name"]: t for t in out["tools"]}
    assert set(tools) == {"encode", "rerank", "extract", "list_models"}
    assert tools["encode"]["annotations"]["readOnlyHint"] is True
    assert "outputSchema" in tools["rerank"]


def test_inspector_calls_a_tool_over_stdio(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    args = ["--method", "tools/call", "--tool-name", "list_models", "--tool-arg", "task=rerank"]
    code, out, err = run_inspector([*stdio_target(tiny_models), *args], tmp_path)
    assert code == 0, err
    assert not out.get("isError")
    models = out["structuredContent"]["models"]
    assert {m["task"] for m in models} == {"score"} and "tiny-reranker" in {m["id"] for m in models}
    assert "tiny-reranker [default]" in out["content"][0]["text"]


def test_inspector_sees_a_tool_error_for_an_unknown_model(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    args = ["--method", "tools/call", "--tool-name", "rerank", "--tool-arg", "query=q", 'documents=["a"]']
    code, out, err = run_inspector([*stdio_target(tiny_models), *args, "model=acme/unknown"], tmp_path)
    assert code == 5, (code, out, err)  # the Inspector's exit code for an isError result
    assert out["isError"] is True and "tiny-reranker (score)" in out["content"][0]["text"]


def test_inspector_over_streamable_http_with_the_token(http_server: HttpServer, tmp_path: Path) -> None:
    header = ["--header", f"Authorization: Bearer {http_server.token}"]
    code, out, err = run_inspector([http_server.url, *header, "--method", "tools/list"], tmp_path)
    assert code == 0, err
    assert {t["name"] for t in out["tools"]} == {"encode", "rerank", "extract", "list_models"}
    encode = ["--method", "tools/call", "--tool-name", "encode", "--tool-arg", 'texts=["a b", "c d"]', "dims=8"]
    code, out, err = run_inspector([http_server.url, *header, *encode], tmp_path)
    assert code == 0, err
    assert out["structuredContent"]["model"] == "tiny-encoder" and out["structuredContent"]["dims"] == 8
    assert [len(v) for v in out["structuredContent"]["vectors"]] == [8, 8]
    assert "2 vectors of 8 dimensions" in out["content"][0]["text"]
    call = ["--method", "tools/call", "--tool-name", "rerank", "--tool-arg", "query=invoice due"]
    call += ['documents=["Invoice 4471 is due on 30 June.", "A fox."]', "top_k=1"]
    code, out, err = run_inspector([http_server.url, *header, *call], tmp_path)
    assert code == 0, err
    (best,) = out["structuredContent"]["results"]
    assert best["rank"] == 1 and best["document"] in ("Invoice 4471 is due on 30 June.", "A fox.")
    code, out, err = run_inspector([http_server.url, "--method", "tools/list"], tmp_path)
    assert code != 0, "without the token the server refuses the Inspector"


def test_inspector_calls_extract_with_classes(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from ..tiny_models import build_extra

    nli = build_extra(tiny_models["bert"].parent, "nli")
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nid = "tiny-nli"\ntask = "extract"\nfamily = "nli"\npath = "{nli}"\n')
    target = ["-e", f"SIE_CONFIG={config}", *stdio_target(tiny_models)]  # the Inspector owns --config
    args = ["--method", "tools/call", "--tool-name", "extract", "--tool-arg", "text=Invoice 4471 is due on 30 June."]
    code, out, err = run_inspector([*target, *args, 'classes=["invoice", "travel"]', "model=tiny-nli"], tmp_path)
    assert code == 0, (code, out, err)
    assert not out.get("isError"), out
    (result,) = out["structuredContent"]["results"]
    assert sorted(c["label"] for c in result["classifications"]) == ["invoice", "travel"]
    assert "classes: " in out["content"][0]["text"]
