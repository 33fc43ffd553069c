"""Over HTTP (`sie-agents serve`): a 199,000-character extract does not hold up /v1/models or another model's encode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from .http_server import SEED_EXTRACTOR, TINY_ENCODER, ServeProcess, write_model_config

pytestmark = pytest.mark.slow

BIG_TEXT = ("lorem ipsum dolor sit amet " * 8000)[:199000]
LABELS = ["person", "organization"]


def test_big_extract_over_http_leaves_other_calls_fast(
    tiny_models: dict[str, Path], minilm_path: Path, tmp_path: Path
) -> None:
    config = write_model_config(tmp_path, tiny_models, minilm_path)
    args = ["--config", str(config), "--device", "cpu", "--offline", "--no-mcp"]
    proc = ServeProcess([*args, "--preload", SEED_EXTRACTOR, "--preload", TINY_ENCODER], tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=proc.url, timeout=120) as client:

            def extract(text: str) -> httpx.Response:
                body = {"items": [{"text": text}], "params": {"labels": LABELS, "options": {"threshold": 0.0}}}
                return client.post(f"/v1/extract/{SEED_EXTRACTOR}", json=body)

            def encode() -> httpx.Response:
                return client.post(f"/v1/encode/{TINY_ENCODER}", json={"items": [{"text": "one short sentence"}]})

            # Warm every path first (windowing, merging, every span kept) on a text of a few windows.
            assert encode().status_code == 200 and extract(BIG_TEXT[:4000]).status_code == 200
            assert client.get("/v1/models").status_code == 200
            big: list[httpx.Response] = []
            worker = threading.Thread(target=lambda: big.append(extract(BIG_TEXT)))
            worker.start()
            time.sleep(0.8)
            lists, encodes = [], []
            while worker.is_alive() and len(lists) < 8:
                started = time.perf_counter()
                listed = client.get("/v1/models")
                lists.append(time.perf_counter() - started)
                started = time.perf_counter()
                encoded = encode()
                encodes.append(time.perf_counter() - started)
                assert listed.status_code == 200 and encoded.status_code == 200, (listed.text, encoded.text)
                time.sleep(0.2)
            worker.join(timeout=120)
        print("/v1/models", [round(x * 1000) for x in lists], "encode", [round(x * 1000) for x in encodes])
        assert big and big[0].status_code == 200 and big[0].json()["items"][0]["entities"]
        assert lists, "the big extract finished before anything could be measured"
        assert max(lists) < 0.1, f"/v1/models took up to {max(lists) * 1000:.0f} ms during the big extract"
        assert max(encodes) < 1.0, f"encode took up to {max(encodes):.2f} s during the big extract"
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]
