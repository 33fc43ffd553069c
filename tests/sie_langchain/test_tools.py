from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from sie_core import Engine
from sie_langchain import SIEEmbeddings, SIEExtractor, SIERerankTool, SIERetriever, SIEToolkit

from . import _shared
from ._shared import CORPUS, MINILM, TINY_ENCODER, TINY_EXTRACTOR, TINY_RERANKER, TINY_RERANKER_B

TEXT = "Alice Smith works for Globex Corporation in Paris."


# ---------------------------------------------------------------------------------- standard suites
class _ExtractorParams:
    @property
    def tool_constructor(self) -> type[SIEExtractor]:
        return SIEExtractor

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"model": TINY_EXTRACTOR, "engine": _shared.engine(), "threshold": 0.3}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"text": TEXT, "labels": ["person", "organization"]}


class TestSIEExtractorUnit(_ExtractorParams, ToolsUnitTests):
    pass


class TestSIEExtractorIntegration(_ExtractorParams, ToolsIntegrationTests):
    pass


class _SearchParams:
    @property
    def tool_constructor(self) -> BaseTool:
        return _shared.toolkit_tool("sie_search")  # type: ignore[no-any-return]

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "When is the Acme invoice due?", "k": 2, "model": TINY_ENCODER}


class TestToolkitSearchUnit(_SearchParams, ToolsUnitTests):
    pass


class TestToolkitSearchIntegration(_SearchParams, ToolsIntegrationTests):
    pass


class _RerankParams:
    @property
    def tool_constructor(self) -> BaseTool:
        return _shared.toolkit_tool("sie_rerank")  # type: ignore[no-any-return]

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "Acme invoice", "documents": CORPUS[:4], "top_k": 2, "model": TINY_RERANKER_B}


class TestToolkitRerankUnit(_RerankParams, ToolsUnitTests):
    pass


class TestToolkitRerankIntegration(_RerankParams, ToolsIntegrationTests):
    pass


class _ExtractParams:
    @property
    def tool_constructor(self) -> BaseTool:
        return _shared.toolkit_tool("sie_extract")  # type: ignore[no-any-return]

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"text": TEXT, "labels": ["person", "location"], "model": TINY_EXTRACTOR}


class TestToolkitExtractUnit(_ExtractParams, ToolsUnitTests):
    pass


class TestToolkitExtractIntegration(_ExtractParams, ToolsIntegrationTests):
    pass


# ---------------------------------------------------------------------------------- extractor
def _call(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": args, "id": "call-1"})
    assert isinstance(message, ToolMessage)
    return message


def test_extractor_content_is_short_and_artifact_structured(lc_engine: Engine) -> None:
    tool = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine, threshold=0.3, labels=["person", "organization"])
    message = _call(tool, {"text": TEXT})
    expected = lc_engine.extract(TINY_EXTRACTOR, TEXT, labels=["person", "organization"], threshold=0.3)
    assert expected.entities, "the tiny GLiNER finds spans at threshold 0.3"
    artifact = message.artifact
    assert artifact["model"] == TINY_EXTRACTOR
    assert artifact["labels"] == ["person", "organization"]
    assert artifact["entities"] == [e.to_dict() for e in expected.entities]
    for entity in artifact["entities"]:
        assert TEXT[entity["start"] : entity["end"]] == entity["text"]
    lines = str(message.content).splitlines()
    assert len(lines) == len(expected.entities)
    assert lines[0] == f"{expected.entities[0].label}: {expected.entities[0].text} ({expected.entities[0].score:.2f})"
    # invoked with plain arguments (no tool call) a content_and_artifact tool returns the content only
    assert tool.invoke({"text": TEXT}) == message.content


def test_extractor_labels_per_call_and_options(lc_engine: Engine) -> None:
    tool = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine, threshold=0.3, options={"multi_label": True})
    message = _call(tool, {"text": TEXT, "labels": ["city"]})
    assert message.artifact["labels"] == ["city"]
    expected = lc_engine.extract(TINY_EXTRACTOR, TEXT, labels=["city"], threshold=0.3, multi_label=True)
    assert message.artifact["entities"] == [e.to_dict() for e in expected.entities]
    assert {e["label"] for e in message.artifact["entities"]} == {"city"}
    strict = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine, threshold=0.99)
    empty = _call(strict, {"text": TEXT})
    assert empty.content == "No entities found for labels: person, organization, location."
    assert empty.artifact["entities"] == []
    with pytest.raises(ValueError, match="unknown extract option"):
        SIEExtractor(options={"threshold": 0.2})
    with pytest.raises(ValueError, match="flat_ner must be true or false"):
        SIEExtractor(options={"flat_ner": "yes"})


async def test_extractor_async_awaits_the_engine(lc_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine, threshold=0.3)
    sync = _call(tool, {"text": TEXT})

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("_arun must await Engine.aextract")

    monkeypatch.setattr(Engine, "extract", no_sync)
    message = await tool.ainvoke({"type": "tool_call", "name": tool.name, "args": {"text": TEXT}, "id": "c"})
    assert message.content == sync.content and message.artifact == sync.artifact


def test_engine_errors_reach_the_agent_as_tool_output(lc_engine: Engine) -> None:
    tool = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine)
    too_many = [f"label{i}" for i in range(lc_engine.config.max_labels + 1)]
    message = _call(tool, {"text": TEXT, "labels": too_many})
    assert "labels" in str(message.content) and message.artifact is None
    wrong_task = SIEExtractor(model=MINILM, engine=lc_engine)
    assert "extract" in str(_call(wrong_task, {"text": TEXT}).content)
    raising = SIEExtractor(model=TINY_EXTRACTOR, engine=lc_engine, handle_tool_error=False)
    with pytest.raises(Exception, match="labels"):
        _call(raising, {"text": TEXT, "labels": too_many})


# ---------------------------------------------------------------------------------- toolkit
def test_toolkit_tools_offer_the_configured_models_as_an_enum() -> None:
    tools = {t.name: t for t in _shared.toolkit().get_tools()}
    assert list(tools) == ["sie_search", "sie_rerank", "sie_extract"]
    expected = {
        "sie_search": [MINILM, TINY_ENCODER],
        "sie_rerank": [TINY_RERANKER, TINY_RERANKER_B],
        "sie_extract": [TINY_EXTRACTOR],
    }
    for name, models in expected.items():
        schema = convert_to_openai_tool(tools[name])["function"]
        model_arg = schema["parameters"]["properties"]["model"]
        assert model_arg["enum"] == models
        assert model_arg.get("default", models[0]) == models[0]
        description = model_arg["description"]
        for model in models:
            spec = _shared.engine().catalog.get(model)
            assert spec is not None
            assert f"- {model}: {spec.description}" in description.splitlines()
        assert schema["description"] and "\n" not in schema["description"]


def test_toolkit_model_choice_reaches_the_engine() -> None:
    rerank = _shared.toolkit_tool("sie_rerank")
    for model in (TINY_RERANKER, TINY_RERANKER_B):
        message = _call(rerank, {"query": "Acme invoice", "documents": CORPUS[:3], "model": model})
        assert message.artifact["model"] == model
    default = _call(rerank, {"query": "Acme invoice", "documents": CORPUS[:3]})
    assert default.artifact["model"] == TINY_RERANKER
    search = _shared.toolkit_tool("sie_search")
    assert _call(search, {"query": "invoice", "model": TINY_ENCODER}).artifact["model"] == TINY_ENCODER
    found = _call(search, {"query": "When is the Acme invoice due?"})
    assert found.artifact["model"] == MINILM
    assert found.artifact["documents"][0]["text"] == CORPUS[0]
    assert len(found.artifact["documents"]) == 3  # the retriever's k
    with pytest.raises(ValueError, match=f"'{TINY_RERANKER}' or '{TINY_RERANKER_B}'"):
        _call(rerank, {"query": "q", "documents": ["a"], "model": "not-offered"})


def test_toolkit_rerank_output(lc_engine: Engine) -> None:
    rerank = _shared.toolkit_tool("sie_rerank")
    message = _call(rerank, {"query": "Acme invoice", "documents": CORPUS[:4], "top_k": 2})
    expected = lc_engine.score(TINY_RERANKER, "Acme invoice", CORPUS[:4], top_k=2)
    results = message.artifact["results"]
    assert [r["index"] for r in results] == [e.index for e in expected.scores]
    assert [r["relevance_score"] for r in results] == [e.relevance for e in expected.scores]
    assert [r["text"] for r in results] == [CORPUS[e.index] for e in expected.scores]
    lines = str(message.content).splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"1. [document {expected.scores[0].index}] relevance ")


def test_toolkit_table_shapes_and_errors(lc_engine: Engine) -> None:
    retriever = SIERetriever.from_texts(CORPUS[:3], model=TINY_ENCODER, engine=lc_engine)
    toolkit = SIEToolkit(
        tasks={"rerank": ("score", TINY_RERANKER), "pii": ("extract", [TINY_EXTRACTOR])},
        engine=lc_engine,
    )
    names = [t.name for t in toolkit.get_tools()]
    assert names == ["sie_rerank", "sie_pii"]
    pii = toolkit.get_tools()[1]
    assert pii.description.startswith("(pii) ")
    defaults = SIEToolkit(engine=lc_engine, retriever=retriever).get_tools()
    assert [t.name for t in defaults] == ["sie_search", "sie_rerank", "sie_extract"]
    default_models = [
        convert_to_openai_tool(t)["function"]["parameters"]["properties"]["model"]["enum"] for t in defaults
    ]
    assert default_models == [[TINY_ENCODER], [lc_engine.default_model("score")], [lc_engine.default_model("extract")]]
    assert [t.name for t in SIEToolkit(engine=lc_engine).get_tools()] == ["sie_rerank", "sie_extract"]
    with pytest.raises(ValueError, match="retriever"):
        SIEToolkit(tasks={"retrieve": ("encode", MINILM)}, engine=lc_engine)
    with pytest.raises(ValueError, match="engine function"):
        SIEToolkit(tasks={"rerank": ("rerank", TINY_RERANKER)}, engine=lc_engine)
    with pytest.raises(ValueError, match="at least one model"):
        SIEToolkit(tasks={"rerank": ("score",)}, engine=lc_engine)
    with pytest.raises(ValueError, match="task name"):
        SIEToolkit(tasks={"re rank": ("score", TINY_RERANKER)}, engine=lc_engine)
    with pytest.raises(ValueError, match="twice"):
        SIERerankTool(models=[TINY_RERANKER, TINY_RERANKER], engine=lc_engine)


def test_toolkit_tools_share_the_toolkit_engine(lc_engine: Engine) -> None:
    toolkit = _shared.toolkit()
    assert all(t.client is lc_engine for t in toolkit.get_tools())
    with pytest.raises(ValueError, match="either engine= or base_url="):
        SIEToolkit(engine=lc_engine, base_url="http://127.0.0.1:9")


def test_search_tool_over_a_vector_store(lc_engine: Engine) -> None:
    store = InMemoryVectorStore.from_texts(CORPUS, SIEEmbeddings(model=MINILM, engine=lc_engine))
    retriever = SIERetriever(vectorstore=store, engine=lc_engine, k=2)
    (search,) = SIEToolkit(engine=lc_engine, retriever=retriever, tasks={"retrieve": ("encode", MINILM)}).get_tools()
    assert "model" not in convert_to_openai_tool(search)["function"]["parameters"]["properties"]
    message = _call(search, {"query": "vegetarian lunch"})
    assert message.artifact["model"] is None
    assert message.artifact["documents"][0]["text"] == CORPUS[2]
    assert len(message.artifact["documents"]) == 2
    with pytest.raises(ValueError, match="cannot choose among 2 encode models"):
        SIEToolkit(engine=lc_engine, retriever=retriever, tasks={"retrieve": ("encode", MINILM, TINY_ENCODER)})
