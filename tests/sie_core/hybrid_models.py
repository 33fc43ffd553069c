"""Tiny random SPLADE and ColBERT models, built locally in seconds (no network), and the PyLate reference runner.

The SPLADE folders are written by sentence-transformers' ``SparseEncoder`` itself. The ColBERT folders are
written in PyLate's own layouts (a PyLate folder: transformer, ``1_Dense`` projection and the ColBERT settings in
``config_sentence_transformers.json``; a Stanford checkpoint: ``HF_ColBERT`` with ``linear.weight`` and
``artifact.metadata``), so that PyLate, run from its own environment, loads exactly these files as reference.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..tiny_models import build_all

REPO = Path(__file__).resolve().parents[2]
#: Where .ci/run installs PyLate with the sentence-transformers and transformers it pins (PyLate 1.6 does not run
#: on sentence-transformers 6); torch comes from the main environment.
PYLATE_REF = Path(os.environ.get("SIE_PYLATE_REF") or REPO / ".venv-pylate-ref")
_REFERENCE_SCRIPT = Path(__file__).with_name("pylate_reference.py")
#: Where .ci/run installs FlagEmbedding (with peft and accelerate, no other dependencies), BGE-M3's reference; it
#: runs with PyLate's folder after it on the path (transformers 5.3).
FLAG_REF = Path(os.environ.get("SIE_FLAG_REF") or REPO / ".venv-flag-ref")
_FLAG_SCRIPT = Path(__file__).with_name("flag_reference.py")


def build_splade(folder: Path, bert: Path, seed: int = 11) -> Path:
    """A masked-LM tiny BERT as a ``SparseEncoder`` (Transformer fill-mask -> SpladePooling max) with prompts."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    torch.manual_seed(seed)
    mlm_dir = folder.parent / f".{folder.name}-mlm"
    BertForMaskedLM(BertConfig.from_pretrained(str(bert))).save_pretrained(mlm_dir)
    BertTokenizerFast.from_pretrained(str(bert)).save_pretrained(mlm_dir)
    transformer = Transformer(str(mlm_dir), transformer_task="fill-mask", max_seq_length=48)
    model = SparseEncoder(modules=[transformer, SpladePooling("max")], device="cpu")
    model.prompts = {"query": "query: ", "document": "passage: "}
    model.save(str(folder))
    shutil.rmtree(mlm_dir, ignore_errors=True)
    return folder


def build_splade_inference_free(folder: Path, splade: Path, seed: int = 12) -> Path:
    """A Router SparseEncoder: static query weights (``SparseStaticEmbedding``), documents by the masked LM."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router, Transformer
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling

    torch.manual_seed(seed)
    transformer = Transformer(str(splade), transformer_task="fill-mask", max_seq_length=48)
    weights = torch.rand(len(transformer.tokenizer.get_vocab())) * (torch.rand(len(transformer.tokenizer)) > 0.3)
    static = SparseStaticEmbedding(tokenizer=transformer.tokenizer, weight=weights, frozen=True)
    router = Router.for_query_document(
        query_modules=[static], document_modules=[transformer, SpladePooling("max", activation_function="log1p_relu")]
    )
    SparseEncoder(modules=[router], device="cpu").save(str(folder))
    return folder


COLBERT_SETTINGS = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 12,
    "document_length": 24,
    "attend_to_expansion_tokens": False,
    "skiplist_words": list(string.punctuation),
    "do_query_expansion": True,
}


def _dense(folder: Path, in_features: int, out_features: int) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "in_features": in_features,
        "out_features": out_features,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
        "use_residual": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"linear.weight": torch.randn(out_features, in_features) * 0.2}, str(folder / "model.safetensors"))


def build_colbert(
    folder: Path, bert: Path, seed: int = 13, dims: int = 16, settings: dict[str, Any] | None = None
) -> Path:
    """A PyLate folder: the BERT at ``bert`` with [Q]/[D] marker tokens, a random hidden -> ``dims`` projection,
    and PyLate's settings (``COLBERT_SETTINGS`` updated with ``settings``)."""
    import torch
    from transformers import BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast.from_pretrained(str(bert))
    tokenizer.add_tokens(["[Q] ", "[D] "])
    model = BertModel.from_pretrained(str(bert))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _dense(folder / "1_Dense", model.config.hidden_size, dims)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    merged = {**COLBERT_SETTINGS, **(settings or {})}
    seq = {"max_seq_length": merged["document_length"] - 1, "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(seq))
    st_config = {"model_type": "ColBERT", "prompts": {"query": "", "document": ""}, "default_prompt_name": None,
                 "similarity_fn_name": "MaxSim", **merged}  # fmt: skip
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return folder


def build_stanford_colbert(folder: Path, bert: Path, seed: int = 14) -> Path:
    """A Stanford ColBERT checkpoint: ``HF_ColBERT``, ``bert.*`` and ``linear.weight`` in one file, metadata."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast.from_pretrained(str(bert))
    tokenizer.add_tokens(["[unused0]", "[unused1]"], special_tokens=True)
    model = BertModel.from_pretrained(str(bert))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = torch.randn(8, 32) * 0.2
    save_file(state, str(folder / "model.safetensors"))
    config = model.config.to_dict()
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    metadata = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 10, "doc_maxlen": 20,
                "attend_to_mask_tokens": False}  # fmt: skip
    (folder / "artifact.metadata").write_text(json.dumps(metadata))
    return folder


def build_bge_m3(folder: Path, bert: Path, seed: int = 15) -> Path:
    """A BGE-M3 folder as FlagEmbedding saves one: the tiny BERT, ``sparse_linear.pt`` and ``colbert_linear.pt``."""
    import torch
    from transformers import BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model = BertModel.from_pretrained(str(bert))
    model.save_pretrained(folder)
    BertTokenizerFast.from_pretrained(str(bert)).save_pretrained(folder)
    hidden = model.config.hidden_size
    sparse = torch.nn.Linear(hidden, 1)
    torch.nn.init.normal_(sparse.weight, std=0.5)
    torch.nn.init.constant_(sparse.bias, 0.1)  # most tokens get a positive weight, some are cut by the relu
    torch.save(sparse.state_dict(), folder / "sparse_linear.pt")
    torch.save(
        torch.nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt"
    )  # as BGE-M3: hidden -> hidden
    return folder


_BUILDERS = {
    "splade": lambda scratch, root, bert: build_splade(scratch / "splade", bert),
    "splade_free": lambda scratch, root, bert: build_splade_inference_free(
        scratch / "splade_free", build_hybrid(root, "splade")
    ),
    "colbert": lambda scratch, root, bert: build_colbert(scratch / "colbert", bert),
    "colbert_stanford": lambda scratch, root, bert: build_stanford_colbert(scratch / "colbert_stanford", bert),
    "bge_m3": lambda scratch, root, bert: build_bge_m3(scratch / "bge_m3", bert),
}


def build_hybrid(root: Path, name: str) -> Path:
    """One tiny model (splade, splade_free, colbert, colbert_stanford, bge_m3), built once under ``root``."""
    folder = root / name
    if (folder / ".built").is_file():
        return folder
    bert = build_all(root)["bert"]
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        built = _BUILDERS[name](scratch, root, bert)
        (built / ".built").write_text("ok")
        try:
            built.rename(folder)
        except OSError:  # another run finished first
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def pylate_available() -> bool:
    """Whether the PyLate reference environment exists (.ci/run installs it)."""
    return (PYLATE_REF / "pylate").is_dir()


def pylate_reference(folder: Path, queries: list[str], documents: list[str], tmp: Path) -> dict[str, Any]:
    """PyLate's token vectors and ``colbert_scores`` for ``folder``, computed in PyLate's own environment.

    Returns:
        ``queries`` and ``documents`` (lists of float32 ``[tokens, dim]``) and ``scores`` (``[queries, documents]``).
    """
    out = tmp / "pylate.npz"
    env = dict(os.environ, PYTHONPATH=str(PYLATE_REF), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    args = [sys.executable, str(_REFERENCE_SCRIPT), str(folder), str(out), json.dumps([queries, documents])]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the PyLate reference failed:\n{done.stderr[-3000:]}"
    data = np.load(out)
    return {
        "queries": [data[f"q{i}"] for i in range(len(queries))],
        "documents": [data[f"d{i}"] for i in range(len(documents))],
        "scores": data["scores"],
    }


def flag_reference(folder: Path, texts: list[str], tmp: Path) -> dict[str, Any]:
    """FlagEmbedding's ``BGEM3FlagModel`` outputs for ``folder``, computed in its own environment.

    Returns:
        ``dense`` (``[texts, dims]``), ``sparse`` (per text ascending ids and weights) and ``multivector``.
    """
    out = tmp / "flag.npz"
    # FlagEmbedding 1.4.2 does not run on transformers 6.x-era tokenizers: it borrows PyLate's transformers 5.3
    path = os.pathsep.join([str(FLAG_REF), str(PYLATE_REF)])
    env = dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    args = [sys.executable, str(_FLAG_SCRIPT), str(folder), str(out), json.dumps(texts)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the FlagEmbedding reference failed:\n{done.stderr[-3000:]}"
    data = np.load(out)
    return {
        "dense": data["dense"],
        "sparse": [(data[f"si{i}"], data[f"sv{i}"]) for i in range(len(texts))],
        "multivector": [data[f"m{i}"] for i in range(len(texts))],
    }
