"""``export-onnx`` for SPLADE and ColBERT models: the graphs, their metadata, and the checks against torch.

A SPLADE graph ends in SPLADE pooling (output ``splade_pooled``: ``[rows, vocabulary]``, which the ONNX adapter
runs a few rows at a time); an inference-free model's static query weights are written beside it as
``query/weights.npy`` with that side's tokenizer. A ColBERT graph is the transformer plus its projection
(output ``token_embeddings``); markers, query expansion, the skip-list and normalisation stay in the adapter.
Both are checked through the ONNX adapters against the torch adapters, queries and documents, before they
are kept. Used by :func:`sie_core.onnx_export.export_onnx`; torch is imported only when an export runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .catalog import ModelSpec
from .config import EngineConfig
from .sources import ModelSource

__all__ = ["LateExporter", "load_late_exporter"]

_SIDES = (True, False)


def _sparse_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Largest weight difference of two sparse vectors (a term missing on one side counts as 0 there)."""
    union = np.union1d(a[0], b[0])
    if not len(union):
        return 0.0
    dense_a, dense_b = np.zeros(len(union)), np.zeros(len(union))
    dense_a[np.searchsorted(union, a[0])] = a[1]
    dense_b[np.searchsorted(union, b[0])] = b[1]
    return float(np.abs(dense_a - dense_b).max())


def _sparse_cosine(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    _, ia, ib = np.intersect1d(a[0], b[0], return_indices=True)
    norm = float(np.linalg.norm(a[1]) * np.linalg.norm(b[1]))
    return float(np.dot(a[1][ia], b[1][ib]) / norm) if norm > 0 else 1.0


class LateExporter:
    """One SPLADE or ColBERT model being exported (the interface ``export_onnx`` drives)."""

    def __init__(self, spec: ModelSpec, source: ModelSource, family: str, config: EngineConfig) -> None:
        self.spec = spec
        self.source = source
        self.family = family
        cpu = config.replace(device="cpu", dtype="float32")
        if family == "splade":
            from .adapters.splade import SpladeEncoder

            self.torch: Any = SpladeEncoder(spec, source, cpu)
            side = self.torch.document_side
            assert side is not None
            self.hf_model, self.tokenizer = side.model, side.tokenizer
        else:
            from .adapters.colbert import ColbertEncoder

            self.torch = ColbertEncoder(spec, source, cpu)
            self.hf_model, self.tokenizer = self.torch.model, self.torch.tokenizer
        try:
            self.hf_model.set_attn_implementation("eager")  # the plain attention graph ORT's optimizer fuses best
        except Exception:  # some architectures support only one implementation; keep it
            pass
        self.input_names = ["input_ids", "attention_mask"]
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
            self.input_names.append("token_type_ids")
        self._fp32: list[Any] = []

    # ------------------------------------------------------------------ graph
    def _graph(self) -> Any:
        import torch

        names, family, adapter, hf_model = self.input_names, self.family, self.torch, self.hf_model

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = hf_model
                self.layers = torch.nn.ModuleList(
                    [m for layer in getattr(adapter, "layers", []) for m in layer.modules()]
                )

            def forward(self, *args: Any) -> Any:
                inputs = dict(zip(names, args))
                if family == "colbert":
                    states = self.inner(**inputs).last_hidden_state
                    for layer in adapter.layers:
                        states = layer(states)
                    return states
                side = adapter.layout.document
                logits = self.inner(**inputs).logits
                scores = torch.log1p(torch.relu(logits * inputs["attention_mask"].unsqueeze(-1).to(logits.dtype)))
                if side.activation == "log1p_relu":
                    scores = torch.log1p(scores)
                return scores.amax(dim=1) if side.pooling == "max" else scores.sum(dim=1)

        return Graph().eval()

    def export(self, path: Path, opset: int) -> None:
        """Trace the graph to ``path``."""
        import torch

        from .adapters.onnx_colbert import TOKEN_OUTPUT
        from .adapters.onnx_splade import POOLED_OUTPUT
        from .onnx_export import _TRACE_TEXTS, _quiet

        output = POOLED_OUTPUT if self.family == "splade" else TOKEN_OUTPUT
        sample = self.tokenizer(_TRACE_TEXTS, padding=True, return_tensors="pt")
        args = tuple(sample[n] for n in self.input_names)
        axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in self.input_names}
        axes[output] = {0: "batch"} if self.family == "splade" else {0: "batch", 1: "sequence"}
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                self._graph(),
                args,
                str(path),
                input_names=self.input_names,
                output_names=[output],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )

    def save_metadata(self, folder: Path) -> None:
        """Tokenizer and config (and an inference-free model's static query side) beside the graph."""
        from .adapters.splade_files import STATIC_WEIGHTS
        from .errors import ModelLoadError
        from .onnx_export import _quiet

        with _quiet():
            self.tokenizer.save_pretrained(str(folder))
            self.hf_model.config.save_pretrained(str(folder))
            if self.family == "splade" and self.torch.layout.inference_free:
                static = self.torch._sides[True]
                (folder / "query").mkdir()
                static.tokenizer.save_pretrained(str(folder / "query"))
                np.save(folder / "query" / STATIC_WEIGHTS, static.weights)
        if not (folder / "tokenizer.json").is_file():
            raise ModelLoadError(
                f"model {self.spec.id!r} has no fast tokenizer (tokenizer.json), which the ONNX backend needs"
            )

    def metadata(self) -> dict[str, Any]:
        """The manifest entries: family, settings, max length, dims and prompts."""
        adapter = self.torch
        if self.family == "colbert":
            settings = adapter.settings.describe()
            return {
                "family": "colbert",
                "colbert": settings,
                "max_length": adapter.settings.document_length,
                "dims": int(adapter.dims),
                "prompts": dict(adapter.prompts),
            }
        layout = adapter.layout
        document = layout.document.describe(layout.document.folder)
        query = dict(document) if not layout.inference_free else {"kind": "static", "folder": "query"}
        document["max_length"] = adapter._sides[False].max_length
        if not layout.inference_free:
            query["max_length"] = document["max_length"]
        return {
            "family": "splade",
            "splade": {
                "query": query,
                "document": document,
                "prompts": dict(layout.prompts),
                "max_active_dims": adapter.max_active_dims,
            },
            "max_length": document["max_length"],
            "dims": int(adapter.dims),
            "prompts": dict(layout.prompts),
        }

    # ------------------------------------------------------------------ checks
    def _outputs(self, adapter: Any) -> list[Any]:
        from .onnx_export import _CHECK_TEXTS

        found = []
        for is_query in _SIDES:
            prompt = adapter.prompt_for(is_query=is_query, instruction=None)
            found.extend(adapter.encode_items(list(_CHECK_TEXTS), prompt, is_query, adapter.outputs))
        return found

    def _onnx(self, folder: Path, onnx_file: str, config: EngineConfig) -> list[Any]:
        from .adapters.onnx_colbert import OnnxColbertEncoder
        from .adapters.onnx_splade import OnnxSpladeEncoder

        probe = ModelSpec(id=self.spec.id, task="encode", family=self.family)
        source = ModelSource(folder, "onnx", f"ONNX export {folder}", onnx_file)
        cls = OnnxSpladeEncoder if self.family == "splade" else OnnxColbertEncoder
        adapter = cls(probe, source, config.replace(device="cpu"))
        try:
            return self._outputs(adapter)
        finally:
            adapter.close()

    def check_fp32(self, folder: Path, config: EngineConfig) -> float:
        """Largest difference between the fp32 graph (through the ONNX adapter) and torch, both sides."""
        from .errors import ModelLoadError
        from .onnx_export import FP32_FILE

        reference = self._outputs(self.torch)
        exported = self._onnx(folder, FP32_FILE, config)
        self._fp32 = exported
        worst = 0.0
        for ref, got in zip(reference, exported):
            if self.family == "splade":
                worst = max(worst, _sparse_diff(ref.sparse, got.sparse))
            elif ref.multivector.shape != got.multivector.shape:
                raise ModelLoadError(
                    f"the ONNX export of {self.spec.id!r} keeps {got.multivector.shape[0]} token vectors where torch "
                    f"keeps {ref.multivector.shape[0]}; it was not kept"
                )
            else:
                worst = max(worst, float(np.abs(ref.multivector - got.multivector).max()))
        return worst

    def check_int8(self, folder: Path, config: EngineConfig) -> float:
        """Lowest cosine of the int8 graph's outputs to the fp32 graph's (sparse vectors, or token vectors)."""
        from .onnx_export import INT8_FILE

        quantized = self._onnx(folder, INT8_FILE, config)
        if self.family == "splade":
            return min(_sparse_cosine(a.sparse, b.sparse) for a, b in zip(quantized, self._fp32))
        return min(
            float((a.multivector * b.multivector).sum(axis=1).min())
            for a, b in zip(quantized, self._fp32)
            if a.multivector.shape == b.multivector.shape
        )

    def close(self) -> None:
        """Drop the torch model."""
        self.torch.close()


def load_late_exporter(spec: ModelSpec, source: ModelSource, family: str, config: EngineConfig) -> LateExporter:
    """The exporter of a SPLADE or ColBERT model, loaded on the CPU in fp32."""
    return LateExporter(spec, source, family, config)
