"""The pages: a status page at ``/``, the API page at ``/docs``, ``/openapi.json`` and ``/v1/status``.

Both pages work offline: the status page is one self-contained HTML file, and ``/docs`` is Swagger UI served
from the installed ``swagger-ui-py`` package (``/docs/assets/...``), never from a CDN; a
``Content-Security-Policy`` keeps the browser from fetching anything from elsewhere. Without that package
``/docs`` falls back to a plain list of the routes.
"""

from __future__ import annotations

import html
import importlib.util
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from sie_core import __version__

from .common import NotFoundError, dumps, state_of
from .openapi import build_openapi

__all__ = ["routes", "swagger_assets"]

#: Only the browser may fetch, and only from this server (inline script and style are the pages' own).
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'"
)
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


@lru_cache(maxsize=1)
def swagger_assets() -> Path | None:
    """The folder of Swagger UI's files from the installed ``swagger-ui-py`` package, or None."""
    spec = importlib.util.find_spec("swagger_ui")  # its files only; the package itself is never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / name).is_file() for name in _ASSETS) else None


def _page(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def _examples(request: Request) -> dict[str, str]:
    engine = state_of(request).engine
    out = {}
    for task in ("encode", "score", "extract"):
        try:
            out[task] = engine.default_model(task)
        except (KeyError, ValueError):
            pass
    return out


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``."""
    state = state_of(request)
    doc = build_openapi(
        mcp=bool(request.app.state.mcp), auth=bool(state.settings.auth_token), examples=_examples(request)
    )
    return Response(dumps(doc), media_type="application/json")


async def server_status(request: Request) -> Response:
    """``GET /v1/status``: readiness, counters and queue depth (the status page reads it every 2 s)."""
    from .app import readiness

    state = state_of(request)
    engine = state.engine
    infos = await engine.alist_models()
    body: dict[str, Any] = {
        "status": readiness(state)[0],
        "version": __version__,
        "uptime_s": round(time.monotonic() - state.started, 1),
        "in_flight": state.in_flight,
        "http_requests": state.http_requests,
        "http_errors": state.http_errors,
        "queue_depth": engine.queue_depth(),
        "models_loaded": sum(1 for i in infos if i.loaded),
        "mcp": bool(request.app.state.mcp),
    }
    return Response(dumps(body), media_type="application/json")


async def docs(request: Request) -> Response:
    """``GET /docs``: Swagger UI on /openapi.json, from local files."""
    root = request.scope.get("root_path", "")
    if swagger_assets() is None:
        return _page(_route_list(build_openapi(mcp=bool(request.app.state.mcp))))
    return _page(_DOCS.replace("{root}", html.escape(root, quote=True)).replace("{version}", html.escape(__version__)))


async def asset(request: Request) -> Response:
    """``GET /docs/assets/{name}``: one of Swagger UI's files."""
    name = request.path_params["name"]
    folder = swagger_assets()
    if folder is None or name not in _ASSETS:
        raise NotFoundError(f"no asset {name!r}; the API page's assets are {', '.join(_ASSETS)}")
    return FileResponse(folder / name, media_type=_ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})


async def status_page(request: Request) -> Response:
    """``GET /``: the status page."""
    root = html.escape(request.scope.get("root_path", ""), quote=True)
    return _page(_STATUS.replace("{root}", root).replace("{version}", html.escape(__version__)))


def _route_list(doc: dict[str, Any]) -> str:
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
            )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>sie-agents API</title></head><body>"
        "<h1>sie-agents API</h1><p>The full description is <a href='openapi.json'>/openapi.json</a> (install "
        "<code>swagger-ui-py</code> for the interactive page).</p><table>" + "".join(rows) + "</table></body></html>"
    )


_DOCS = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sie-agents API {version}</title>
<link rel="icon" type="image/png" href="{root}/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">
<style>body { margin: 0; } .topbar { display: none; }</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "{root}/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 0
});
</script>
</body>
</html>
"""

_STATUS = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sie-agents status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; background: #f6f7f9; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; } .sub { color: #5b6570; margin-bottom: 1rem; }
  .cards { display: flex; gap: .8rem; flex-wrap: wrap; margin-bottom: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: .6rem .9rem; min-width: 8rem; }
  .card b { display: block; font-size: 1.2rem; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde1e6; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
  th { background: #eef0f3; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { padding: 0 .4rem; border-radius: 3px; }
  .loaded { background: #d3f2dc; } .loading { background: #fff1c2; } .failed { background: #f8d3d3; }
  .available { background: #eef0f3; } .err { color: #a31d1d; } #auth { display: none; margin-bottom: 1rem; }
</style>
</head>
<body>
<h1>sie-agents status</h1>
<div class="sub">version {version} &middot; <a href="{root}/docs">API</a> &middot;
  <a href="{root}/metrics">metrics</a> &middot; updated <span id="updated">never</span></div>
<form id="auth"><label>This server needs its token: <input id="token" type="password" autocomplete="off"></label>
  <button>Use</button></form>
<div id="error" class="err"></div>
<div class="cards">
  <div class="card">state<b id="state">&hellip;</b></div>
  <div class="card">uptime<b id="uptime">&hellip;</b></div>
  <div class="card">models loaded<b id="loaded">&hellip;</b></div>
  <div class="card">in flight<b id="inflight">&hellip;</b></div>
  <div class="card">queued items<b id="queued">&hellip;</b></div>
  <div class="card">HTTP requests<b id="requests">&hellip;</b></div>
  <div class="card">HTTP errors<b id="errors">&hellip;</b></div>
</div>
<table>
  <thead><tr><th>model</th><th>state</th><th>tasks</th><th>backend</th><th>device</th><th>memory</th>
    <th>queue</th><th>requests</th><th>errors</th><th>loads</th><th>evictions</th></tr></thead>
  <tbody id="models"><tr><td colspan="11">loading&hellip;</td></tr></tbody>
</table>
<script>
"use strict";
const root = "{root}";
const $ = (id) => document.getElementById(id);
function headers() {
  const token = sessionStorage.getItem("sie-token");
  return token ? {"Authorization": "Bearer " + token} : {};
}
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function mib(bytes) { return bytes == null ? "" : (bytes / 1048576).toFixed(1) + " MiB"; }
function duration(s) {
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
async function get(path) {
  const response = await fetch(root + path, {headers: headers(), cache: "no-store"});
  if (response.status === 401) { $("auth").style.display = "block"; throw new Error("token needed"); }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}
async function refresh() {
  try {
    const [status, listed] = await Promise.all([get("/v1/status"), get("/v1/models")]);
    $("auth").style.display = "none";
    $("error").textContent = "";
    $("state").textContent = status.status;
    $("uptime").textContent = duration(status.uptime_s);
    $("loaded").textContent = status.models_loaded;
    $("inflight").textContent = status.in_flight;
    $("queued").textContent = Object.values(status.queue_depth).reduce((a, b) => a + b, 0);
    $("requests").textContent = status.http_requests;
    $("errors").textContent = status.http_errors;
    const rows = listed.models.filter((m) => m.state !== "available" || m.requests > 0 || m.loads > 0);
    const shown = rows.length ? rows : listed.models;
    shown.sort((a, b) => (b.loaded - a.loaded) || a.name.localeCompare(b.name));
    const body = document.createDocumentFragment();
    for (const m of shown) {
      const tr = document.createElement("tr");
      tr.dataset.model = m.name;
      tr.appendChild(cell(m.name));
      const state = cell("");
      const badge = document.createElement("span");
      badge.className = "state " + m.state;
      badge.textContent = m.state;
      state.appendChild(badge);
      tr.appendChild(state);
      tr.appendChild(cell(m.tasks.join(", ")));
      tr.appendChild(cell(m.backend));
      tr.appendChild(cell(m.device || ""));
      tr.appendChild(cell(mib(m.memory_bytes), "num"));
      tr.appendChild(cell(String(status.queue_depth[m.name] || 0), "num"));
      tr.appendChild(cell(String(m.requests), "num"));
      tr.appendChild(cell(String(m.errors), "num"));
      tr.appendChild(cell(String(m.loads), "num"));
      tr.appendChild(cell(String(m.evictions), "num"));
      body.appendChild(tr);
    }
    $("models").replaceChildren(body);
    $("updated").textContent = new Date().toLocaleTimeString();
  } catch (err) {
    $("error").textContent = "could not refresh: " + err.message;
  }
}
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("sie-token", $("token").value);
  refresh();
});
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""

routes = [
    Route("/", status_page, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/docs/assets/{name}", asset, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/v1/status", server_status, methods=["GET"]),
]
