"""Late-interaction (ColBERT) encoding with an ONNX graph through onnxruntime (never imports torch).

Tokenization, markers, query expansion, the skip-list and normalisation are PyLate's, as in
:mod:`sie_core.adapters.colbert`; the graph gives the projected token vectors (``token_embeddings``, as
``sie-agents export-onnx`` writes it), or, for a bare encoder with ``options.token_dims``, token states of
which the first ``token_dims`` are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import ModelSource
from ._onnx import ModelFiles, OnnxGraph
from .colbert_files import ColbertFiles, marker_ids, read_colbert_files
from .multi import Encoded, MultiEncoderAdapter

__all__ = ["TOKEN_OUTPUT", "OnnxColbertEncoder"]

#: The output of an exported ColBERT graph: projected (not yet normalised) token vectors.
TOKEN_OUTPUT = "token_embeddings"


def _ids(files: ColbertFiles, tokenizer: Any) -> tuple[int | None, int | None, np.ndarray, int]:
    """Marker ids, skip-list ids and the padding (mask) id, from a ``tokenizers`` tokenizer, as PyLate reads them."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    unk = getattr(tokenizer.model, "unk_token", None)
    query, document, skip = marker_ids(files, vocab, vocab.get(unk) if unk else None)
    pad = next((vocab[t] for t in ("[MASK]", "<mask>") if t in vocab), None)
    if pad is None:
        padding = tokenizer.padding
        pad = padding.get("pad_id") if padding else vocab.get("[PAD]", 0)
    return query, document, np.asarray(skip, dtype=np.int64), int(pad)


class OnnxColbertEncoder(MultiEncoderAdapter):
    """A ColBERT model in ONNX; token vectors equal the torch adapter's (and PyLate's) within float tolerance."""

    name = "onnx-colbert"
    backend = "onnx"
    outputs = ("multivector",)

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        from tokenizers import Tokenizer

        meta = ModelFiles.read(source.path)
        files = read_colbert_files(source.path, dict(spec.options), meta.manifest)
        self.settings = s = files.settings
        self.graph = OnnxGraph(spec, source, config)
        self.session = self.graph.session
        self.device, self.dtype, self.memory_bytes = self.graph.device, self.graph.dtype, self.graph.memory_bytes
        self.batch_tokens = self.graph.batch_tokens
        outputs = self.graph.outputs
        three_d = [name for name, o in outputs.items() if len(o.shape) == 3]
        if not three_d:
            raise ModelLoadError(f"model {spec.id!r}: its ONNX graph gives no token vectors (outputs {list(outputs)})")
        self._output = TOKEN_OUTPUT if TOKEN_OUTPUT in outputs else three_d[0]
        tokenizer = Tokenizer.from_file(str(source.path / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer: Any = tokenizer
        self.query_id, self.document_id, self._skip, self._pad = _ids(files, tokenizer)
        self._cut = {}
        for is_query in (True, False):
            marker = self.query_id if is_query else self.document_id
            length = s.query_length if is_query else s.document_length
            cut = Tokenizer.from_str(tokenizer.to_str())
            cut.enable_truncation(length - 1 if marker is not None else length, strategy="longest_first")
            self._cut[is_query] = cut
        self.max_length = s.document_length
        self.prompts = dict(s.prompts)
        probe = self.encode_items(["dimension probe"], None, False, ("multivector",))[0].multivector
        assert probe is not None
        self.dims = int(probe.shape[1])

    def cost_for(self, text: str, *, is_query: bool) -> int:
        """Queries are padded to the query length; documents cost about their length."""
        s = self.settings
        if is_query:
            return s.query_length if s.do_query_expansion else min(self.cost(text) + 1, s.query_length)
        return min(self.cost(text) + 1, s.document_length)

    def _feeds(self, rows: list[list[int]], types: list[list[int]], width: int) -> dict[str, np.ndarray]:
        dtype = self.graph.index_dtype
        ids = np.full((len(rows), width), self._pad, dtype=dtype)
        mask = np.zeros((len(rows), width), dtype=dtype)
        kinds = np.zeros((len(rows), width), dtype=dtype)
        for i, (row, kind) in enumerate(zip(rows, types)):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            kinds[i, : len(kind)] = kind
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.graph.takes_token_types:
            feeds["token_type_ids"] = kinds
        if self.graph.takes_positions:
            feeds["position_ids"] = np.tile(np.arange(width, dtype=dtype), (len(rows), 1))
        return feeds

    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """Token vectors of a batch of one side."""
        s = self.settings
        full = [(prompt + t if prompt else t).strip() for t in texts]
        if s.lowercase:
            full = [t.lower() for t in full]
        marker = self.query_id if is_query else self.document_id
        length = s.query_length if is_query else s.document_length
        counts = [len(e.ids) + (marker is not None) for e in self.tokenizer.encode_batch(full)]
        rows, types = [], []
        for e in self._cut[is_query].encode_batch(full):
            ids, kinds = list(e.ids), list(e.type_ids)
            if marker is not None:
                ids, kinds = ids[:1] + [marker] + ids[1:], kinds[:1] + [0] + kinds[1:]
            rows.append(ids)
            types.append(kinds)
        expand = is_query and s.do_query_expansion
        width = length if expand else max(len(r) for r in rows)
        feeds = self._feeds(rows, types, width)
        real = feeds["attention_mask"].astype(bool)
        if is_query and s.attend_to_expansion_tokens:
            feeds["attention_mask"][:] = 1
        keep = np.ones_like(real) if expand else real if is_query else real & ~np.isin(feeds["input_ids"], self._skip)
        lengths = np.full(len(rows), width) if expand else real.sum(axis=1)
        states = self.graph.map_rows(lambda part, _n: self._run(part, width), feeds, lengths)
        out = []
        for i, n in enumerate(counts):
            kept = states[i][keep[i]]
            if s.token_dims:
                kept = kept[:, : s.token_dims]
            kept = kept / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-12)
            out.append(Encoded(None, None, np.ascontiguousarray(kept, dtype=np.float32), n, n > length))
        return out

    def _run(self, feeds: dict[str, np.ndarray], width: int) -> np.ndarray:
        """Token states of a row chunk, padded back to the batch width (chunks are cut to their longest row)."""
        states = self.graph.run(self._output, feeds)
        if states.shape[1] < width:
            states = np.pad(states, ((0, 0), (0, width - states.shape[1]), (0, 0)))
        return states

    def close(self) -> None:
        """Stop the session's workers and give the memory back."""
        self.graph.close()
        super().close()
