"""The status page (``/``) and the API page (``/docs``) in a real headless browser (Debian's ``chromium``).

Chromium runs with every host name but 127.0.0.1 unresolvable and writes a net log; the pages must render
all the same, and no request made by the pages may go anywhere but the server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sie_core import Engine, EngineConfig, ModelSpec

from .http_server import TINY_ENCODER, serve_in_thread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium for the browser tests (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def page_server(tiny_models: dict[str, Path]) -> Iterator[str]:
    from sie_server.app import create_app

    spec = ModelSpec(id=TINY_ENCODER, task="encode", path=str(tiny_models["encoder"]))
    engine = Engine(EngineConfig(device="cpu", offline=True, allow_any_model=False, models=(spec,)))
    engine.load(TINY_ENCODER)
    try:
        with serve_in_thread(create_app(engine)) as url:
            yield url
    finally:
        engine.close()


def _browse(chromium: str, url: str, tmp: Path) -> tuple[str, list[dict]]:
    """The page's DOM after its scripts ran, and the requests the page made (from Chromium's net log)."""
    netlog = tmp / "netlog.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-features=AutofillServerCommunication,OptimizationHints",
        f"--user-data-dir={tmp / 'profile'}",
        # nothing but 127.0.0.1 resolves: a page that needs the internet cannot render
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--log-net-log={netlog}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode("utf-8"), _page_requests(netlog, url)


def _page_requests(netlog: Path, url: str) -> list[dict]:
    text = netlog.read_text(encoding="utf-8")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short (the browser exits as soon as the DOM is dumped)
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    origin = "/".join(url.split("/", 3)[:3])
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start_job or "url" not in params:
            continue
        # What the page's document, scripts and styles fetch is initiated by the page's origin; the browser's
        # own traffic (updates, autofill) is initiated by no origin.
        if params.get("initiator") == origin or params.get("request_type") == "main frame":
            requests.append(params)
    return requests


def test_docs_page_renders_every_route_offline(chromium: str, page_server: str, tmp_path: Path) -> None:
    dom, requests = _browse(chromium, page_server + "/docs", tmp_path)
    paths = httpx.get(page_server + "/openapi.json").json()["paths"]
    assert len(paths) >= 12
    for path in paths:
        assert f'data-path="{path}"' in dom, f"{path} is not on the rendered API page"
    assert "errors-wrapper" not in dom and "Unable to render" not in dom
    urls = {r["url"] for r in requests}
    assert {page_server + "/openapi.json", page_server + "/docs/assets/swagger-ui-bundle.js"} <= urls
    leaving = sorted(u for u in urls if not u.startswith(page_server + "/"))
    assert not leaving, f"/docs made requests that leave the machine: {leaving}"


def test_status_page_shows_the_loaded_model(chromium: str, page_server: str, tmp_path: Path) -> None:
    dom, requests = _browse(chromium, page_server + "/", tmp_path)
    assert f'<tr data-model="{TINY_ENCODER}">' in dom, dom[-3000:]
    row = dom.split(f'<tr data-model="{TINY_ENCODER}">', 1)[1].split("</tr>", 1)[0]
    assert '<span class="state loaded">loaded</span>' in row and "<td>cpu</td>" in row and "MiB" in row
    assert 'id="state">ready<' in dom
    urls = [r["url"] for r in requests]
    assert {page_server + "/v1/status", page_server + "/v1/models"} <= set(urls)
    assert urls.count(page_server + "/v1/status") >= 2, urls  # it refreshes by itself (every 2 s)
    assert all(u.startswith(page_server + "/") for u in urls), sorted(urls)


def test_pages_answer_without_a_token_but_their_data_needs_it(tiny_models: dict[str, Path]) -> None:
    from sie_server.app import create_app
    from sie_server.common import ServerSettings

    with Engine(EngineConfig(device="cpu", offline=True)) as engine:
        app = create_app(engine, ServerSettings(auth_token="page-token"))
        with serve_in_thread(app) as url:
            for path in ("/", "/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
                response = httpx.get(url + path)
                assert response.status_code == 200, path
            page = httpx.get(url + "/")
            assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
            assert httpx.get(url + "/v1/status").status_code == 401
            doc = httpx.get(url + "/openapi.json").json()
            assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
            missing = httpx.get(url + "/docs/assets/..%2F..%2Fetc%2Fpasswd")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
            assert httpx.get(url + "/docs/assets/index.css").status_code == 404
