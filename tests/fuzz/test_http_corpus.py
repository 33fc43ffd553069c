"""A generated corpus of hostile HTTP requests against a live ``sie-agents serve`` on loopback, with valid calls
interleaved (and sent concurrently with the hostile ones) whose answers must equal the reference.

Required of every answer: nothing left unanswered (10 s per request), no 5xx for invalid input, the envelope
``{"error": {"code", "message"}}`` on every 4xx/5xx, valid calls correct (vectors within 1e-5, rerank scores
and order), the process alive at the end and exiting cleanly.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sie_core.wire import unpackb

from .corpus import (
    ENCODER,
    EXTRACTOR,
    RERANKER,
    VALID,
    EncodeCall,
    ExtractCall,
    HttpCase,
    ScoreCall,
    Verdict,
    http_corpus,
    valid_http_cases,
)
from .harness import (
    ANSWER_TIMEOUT_S,
    Reference,
    ServeProcess,
    check_entities,
    check_scores,
    check_vectors,
    finite_vectors,
    message_problem,
    ranked_shape,
    raw_request,
)

pytestmark = pytest.mark.slow  # a server process, torch, and ~750 requests

TOKEN = "fuzz-token-14"
MAX_BODY_BYTES = 1024 * 1024  # --max-body-mb 1: bodies beyond the limit stay cheap to send
RANDOM_CASES = 380
WORKERS = 4
#: Generous bound on the corpus run (the issue: 1,000 cases across stdio and HTTP in under 3 minutes).
CORPUS_BUDGET_S = 90.0


@dataclass
class Answer:
    """What came back for one case (``error``: why nothing did)."""

    status: int = 0
    headers: dict[str, str] | None = None
    body: bytes = b""
    error: str | None = None


@pytest.fixture(scope="module")
def corpus(fuzz_seed: int) -> list[HttpCase]:
    return http_corpus(fuzz_seed, random_cases=RANDOM_CASES, max_body_bytes=MAX_BODY_BYTES)


@pytest.fixture(scope="module")
def served(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, reference: Reference, corpus: list[HttpCase]
) -> Iterator[ServeProcess]:
    reference.prepare(case.expect for case in corpus)  # up front, before any hostile request
    log = tmp_path_factory.mktemp("fuzz-http") / "serve.log"
    server = ServeProcess(tiny_models, log, token=TOKEN, extra=["--max-body-mb", "1"])
    # first calls load the models (torch import, seconds): outside the per-request timeout and the budget
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for case in valid_http_cases():
            send(client, server, case, timeout=120)
    yield server
    server.stop()


def _headers(case: HttpCase) -> dict[str, str]:
    headers = dict(case.headers)
    if case.auth == "default":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif case.auth is not None:
        headers["Authorization"] = case.auth.format(token=TOKEN)
    return headers


def _needs_raw(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("?")[0].split("/"))


def send(client: httpx.Client, server: ServeProcess, case: HttpCase, timeout: float = ANSWER_TIMEOUT_S) -> Answer:
    """Send one case; httpx unless the path has dot segments (httpx would resolve them)."""
    headers = _headers(case)
    try:
        if _needs_raw(case.path):
            status, got, body = raw_request(server.port, case.method, case.path, headers, case.body, timeout)
            return Answer(status, got, body)
        content: Any = case.body
        if case.chunked:
            data = case.body
            content = iter([data[i : i + 65536] for i in range(0, len(data), 65536)])
        if case.method in ("GET", "DELETE") and not case.body:
            content = None
        response = client.request(case.method, case.path, content=content, headers=headers, timeout=timeout)
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)
    except (httpx.TransportError, OSError, ValueError) as exc:
        return Answer(error=f"{type(exc).__name__}: {exc}")


def _decoded(answer: Answer) -> Any:
    if (answer.headers or {}).get("content-type", "").startswith("application/msgpack"):
        return unpackb(answer.body)
    return json.loads(answer.body)


def envelope_problem(answer: Answer) -> str | None:
    """The error envelope: JSON ``{"error": {"code": str, "message": str}}`` with a clean message."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return f"a {answer.status} without a JSON body: {answer.body[:120]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not error["code"]:
        return f"a {answer.status} without the envelope: {answer.body[:200]!r}"
    return message_problem(error.get("message"))


def answer_problem(case: HttpCase, answer: Answer, reference: Reference) -> str | None:
    """A 200's body against the route's shape and, for valid calls, the reference."""
    try:
        data = _decoded(answer)
        expect = case.expect
        if case.route in ("encode", "embeddings"):
            if case.route == "encode":
                vectors = [item["dense"]["values"] for item in data["items"]]
            else:
                vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
            if isinstance(expect, EncodeCall):
                return check_vectors(reference.get(expect), vectors)
            return finite_vectors(vectors, len(vectors)) or (None if vectors else "no vectors")
        if case.route in ("score", "rerank"):
            rows = data["scores"] if case.route == "score" else data["results"]
            ranked = [(r["index"], r["score"]) for r in rows]
            if isinstance(expect, ScoreCall):
                return check_scores(reference.get(expect), ranked)
            return ranked_shape(ranked, len(ranked), None)
        if case.route == "extract":
            entities = [(e["text"], e["label"], e["start"], e["end"], e["score"]) for e in data["items"][0]["entities"]]
            return check_entities(reference.get(expect), entities) if isinstance(expect, ExtractCall) else None
        if case.route == "models":
            served = {m["id"] for m in data["models"]}
            return None if {ENCODER, RERANKER, EXTRACTOR} <= served else f"/v1/models lists {sorted(served)}"
        if case.route == "model":
            return None if data["id"] == ENCODER else f"/v1/models/{ENCODER} answered {data['id']!r}"
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return f"unexpected answer shape ({type(exc).__name__}: {exc}): {answer.body[:200]!r}"
    return f"a 200 on a case with no route to read it by ({case.kind})"


def judge(case: HttpCase, answer: Answer, reference: Reference) -> str | None:
    """Why the answer to ``case`` breaks the specification (None when it does not)."""
    if answer.error is not None:
        return f"unanswered: {answer.error}"
    status = answer.status
    if b"root:x:0:0" in answer.body:
        return "the answer holds /etc/passwd"
    if status >= 400:
        problem = envelope_problem(answer)
        if problem:
            return problem
    if status >= 500:
        return f"{status} for {case.verdict.value} input: {answer.body[:300]!r}"
    if case.statuses is not None and status not in case.statuses:
        return f"status {status}, expected {sorted(case.statuses)}: {answer.body[:200]!r}"
    if case.verdict is Verdict.VALID and status != 200:
        return f"a valid call answered {status}: {answer.body[:300]!r}"
    if case.verdict is Verdict.INVALID and not 400 <= status < 500:
        return f"invalid input answered {status}, not a 4xx: {answer.body[:200]!r}"
    if status == 200:
        return answer_problem(case, answer, reference)
    return None


def test_http_corpus(
    served: ServeProcess, corpus: list[HttpCase], reference: Reference, fuzz_summary: Callable[[str], None]
) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=served.url, timeout=ANSWER_TIMEOUT_S) as client, ThreadPoolExecutor(WORKERS) as pool:
        answers = list(pool.map(lambda case: send(client, served, case), corpus))
    elapsed = time.monotonic() - started
    statuses = Counter(a.status if a.error is None else "none" for a in answers)
    failures = []
    for case, answer in zip(corpus, answers):
        problem = judge(case, answer, reference)
        if problem:
            failures.append(f"[{case.kind}] {problem}\n    repro: {case.repro(served.url)}")
    valid = sum(1 for c in corpus if c.verdict is VALID)
    answered = sum(1 for a in answers if a.error is None)
    fuzz_summary(
        f"fuzz http: {len(corpus)} cases ({valid} valid) in {elapsed:.1f} s, {answered} answered, "
        f"{len(failures)} failed; statuses {dict(sorted(statuses.items(), key=str))}"
    )
    alive = served.alive()
    assert not failures, f"{len(failures)} of {len(corpus)} cases failed:\n" + "\n".join(failures[:60])
    assert alive, f"the server died during the corpus:\n{served.output()[-3000:]}"
    assert elapsed < CORPUS_BUDGET_S, f"the corpus took {elapsed:.0f} s"


def test_http_server_serves_and_exits_cleanly_after_the_corpus(served: ServeProcess, reference: Reference) -> None:
    with httpx.Client(base_url=served.url, timeout=ANSWER_TIMEOUT_S) as client:
        for case in valid_http_cases():
            problem = judge(case, send(client, served, case), reference)
            assert problem is None, f"{case.method} {case.path}: {problem}"
    assert served.alive()
    code = served.stop()
    log = served.output()
    assert code == 0, log[-3000:]
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-5000:]
