"""examples/agents/route_tasks.py runs offline: real packaged weights where they exist, clear words where not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "agents" / "route_tasks.py"


def run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, env=env)


def test_all_three_tasks_route_through_one_engine(tiny_models):
    proc = run({"SIE_SCORE_MODEL": str(tiny_models["cross_encoder"]), "SIE_EXTRACT_MODEL": str(tiny_models["gliner"])})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "retrieve  [sentence-transformers/all-MiniLM-L6-v2] dims=384" in out
    # the real embedder puts the Berlin revenue document first for the query "Berlin office revenue"
    first_hit = out.splitlines()[1]
    assert "Berlin office reported revenue" in first_hit
    assert "rerank    [" in out and "extract   [" in out
    assert out.strip().endswith("3 of 3 tasks ran")


def test_the_extract_task_runs_offline_on_the_packaged_spacy_pipeline(tiny_models):
    proc = run({"SIE_SCORE_MODEL": str(tiny_models["cross_encoder"])})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "extract   [en_core_web_sm]" in out and "no model available" not in proc.stderr
    # real weights: spaCy's small English pipeline finds the invoice's date
    assert "date            '30 June' (1.00)" in out
    assert out.strip().endswith("3 of 3 tasks ran")


def test_tasks_without_weights_are_named_clearly():
    proc = run({"SIE_EXTRACT_MODEL": "urchade/gliner_multi-v2.1"})
    assert proc.returncode == 0, proc.stderr
    assert "retrieve  [sentence-transformers/all-MiniLM-L6-v2]" in proc.stdout
    assert "unavailable: " in proc.stdout and "extract" in proc.stdout.splitlines()[-1]
    assert (
        "extract   [urchade/gliner_multi-v2.1] no model available: model 'urchade/gliner_multi-v2.1' is not available"
        in proc.stderr
    )
    assert "sie-agents pull urchade/gliner_multi-v2.1" in proc.stderr
