"""``sie-agents export-onnx``: the command, what it writes, and what it refuses."""

from __future__ import annotations

import json

import pytest

from sie_core import Engine, InvalidInputError, ModelSpec
from sie_core.cli import main
from sie_core.onnx_export import export_onnx


def test_export_command_writes_a_checked_self_contained_folder(tiny_models, tmp_path, capsys):
    out = tmp_path / "tiny-encoder-onnx"
    code = main(["export-onnx", str(tiny_models["encoder"]), "--quantize", "int8", "--output", str(out), "--offline"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == str(out)  # stdout: just the folder
    assert "[1/4]" in captured.err and "[4/4]" in captured.err and "max abs difference" in captured.err
    names = sorted(p.name for p in out.iterdir())
    assert {"model.onnx", "model_qint8.onnx", "tokenizer.json", "config.json", "sie_export.json"} <= set(names)
    manifest = json.loads((out / "sie_export.json").read_text())
    assert manifest["task"] == "encode" and manifest["onnx_file"] == "model_qint8.onnx"
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True and manifest["max_length"] == 64
    assert manifest["prompts"] == {"query": "query: ", "document": "passage: "}
    assert manifest["checks"]["fp32_max_abs_diff"] <= 1e-4
    assert not list(tmp_path.glob(".*partial*"))  # the working folder is gone
    # The folder is a model on its own: task, prompts and pooling come from the manifest.
    with Engine(device="cpu", offline=True) as engine:
        query = engine.encode(str(out), "invoice", is_query=True)
        info = next(m for m in engine.list_models() if m.id == str(out))
    assert (info.backend, info.dtype, info.tasks) == ("onnx", "int8", ("encode",))
    assert query.tokens > 3  # "query: " was put in front


def test_export_of_a_cross_encoder_and_re_export_replaces_it(tiny_models, tmp_path):
    out = tmp_path / "reranker"
    first = export_onnx(str(tiny_models["cross_encoder"]), output=out, progress=None)
    assert first.task == "score" and first.onnx_file == "model.onnx" and first.max_abs_diff <= 1e-4
    assert first.int8_agreement is None and not (out / "model_qint8.onnx").exists()
    messages: list[str] = []
    second = export_onnx(str(tiny_models["cross_encoder"]), output=out, quantize="int8", progress=messages.append)
    assert second.onnx_file == "model_qint8.onnx" and (out / "model_qint8.onnx").is_file()
    assert second.int8_agreement is not None and second.int8_agreement < 0.1  # logit difference to fp32
    assert len([m for m in messages if m.startswith("[")]) == 4
    spec = ModelSpec(id="reranker", task="score", path=str(out))
    with Engine(device="cpu", offline=True, models=(spec,)) as engine:
        result = engine.score("reranker", "invoice due", ["Invoice 4471 is due.", "Foxes jump."])
    assert len(result.scores) == 2


def test_export_refuses_what_it_cannot_do(tiny_models, tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="extract model"):
        export_onnx(str(tiny_models["gliner"]), output=tmp_path / "g", progress=None)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        export_onnx(str(tiny_models["encoder"]), output=busy, progress=None)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(InvalidInputError, match="quantize 'int4'"):
        export_onnx(str(tiny_models["encoder"]), quantize="int4", progress=None)
    assert main(["export-onnx", "urchade/gliner_small-v2.1", "--offline"]) == 2
    assert "torch weights are needed" in capsys.readouterr().err
