"""Late-interaction (ColBERT) encoding on torch, as PyLate's ``ColBERT.encode`` computes it.

Per text: the prompt is put in front and the text stripped (as sentence-transformers 5 tokenizes); it is
tokenized to at most ``query_length`` / ``document_length`` tokens with the query (``[Q] ``) or document
(``[D] ``) marker put after the first token; queries are padded with the mask token to ``query_length``
(query expansion; the padding is not attended to unless the model says so, but its vectors are kept). The
transformer's token states go through the projection (PyLate ``Dense`` layers, or a Stanford checkpoint's
``linear``), documents drop their skip-list tokens (punctuation) and padding, and every kept row is
L2-normalised. The rows are what PyLate returns; MaxSim over them is PyLate's ``colbert_scores``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..padding import fixed_cost_for
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import stdout_to_stderr
from .colbert_files import ColbertFiles, marker_ids, read_colbert_files
from .multi import Encoded, MultiEncoderAdapter
from .packed_bert import PackedBert

__all__ = ["ColbertEncoder", "load_projection"]


def _state(folder: Path) -> dict[str, Any]:
    import torch

    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return dict(load_file(str(folder / "model.safetensors")))
    if (folder / "pytorch_model.bin").is_file():
        return dict(torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True))
    raise ModelLoadError(f"{folder}: no projection weights (model.safetensors or pytorch_model.bin)")


def _activation(name: str) -> Any:
    import torch

    module, _, cls = str(name).rpartition(".")
    if not module.startswith("torch.nn") or not hasattr(torch.nn, cls):
        raise ModelLoadError(f"projection activation {name!r} is not a torch.nn activation; it cannot be loaded")
    return getattr(torch.nn, cls)()


class _Dense:
    """One PyLate ``Dense`` layer: ``activation(linear(x))`` plus an optional residual."""

    def __init__(self, folder: Path, stanford: bool) -> None:
        import json

        import torch

        state = _state(folder)
        if stanford:
            config: dict[str, Any] = {"bias": False}
        else:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        weight = state["linear.weight"]
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bool(config.get("bias", True)))
        self.linear.load_state_dict({k[len("linear.") :]: v for k, v in state.items() if k.startswith("linear.")})
        self.activation = _activation(config.get("activation_function", "torch.nn.modules.linear.Identity"))
        self.residual: Any = None
        if config.get("use_residual"):
            if "residual.weight" in state:
                self.residual = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
                self.residual.load_state_dict({"weight": state["residual.weight"]})
            else:
                self.residual = torch.nn.Identity()

    def modules(self) -> list[Any]:
        return [m for m in (self.linear, self.activation, self.residual) if m is not None]

    def __call__(self, x: Any) -> Any:
        out = self.activation(self.linear(x))
        return out + self.residual(x) if self.residual is not None else out


def load_projection(files: ColbertFiles) -> list[_Dense]:
    """The projection layers of a ColBERT folder, in order (empty for a projection-less encoder)."""
    if files.stanford:
        return [_Dense(files.transformer, stanford=True)]
    return [_Dense(folder, stanford=False) for folder in files.dense]


class ColbertEncoder(MultiEncoderAdapter):
    """A PyLate or Stanford ColBERT model on torch; one L2-normalised vector per kept token."""

    name = "colbert"
    outputs = ("multivector",)

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        import torch
        from transformers import AutoModel, AutoTokenizer

        files = read_colbert_files(source.path, dict(spec.options))
        self.settings = settings = files.settings
        with stdout_to_stderr():
            tokenizer = AutoTokenizer.from_pretrained(str(files.transformer), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(files.transformer), local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
        layers = load_projection(files)
        parts = torch.nn.ModuleList([model, *(m for layer in layers for m in layer.modules())])
        if self.dtype != "float32":
            parts = parts.to(torch_dtype(self.dtype))
        parts.to(self.device).eval()
        self.model: Any = model
        self.layers = layers
        pad = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.eos_token_id
        if pad is not None:
            tokenizer.pad_token_id = pad  # PyLate pads (and expands queries) with the mask token
        if tokenizer.pad_token_id is None:
            raise ModelLoadError(f"model {spec.id!r}: its tokenizer has no mask, end or padding token to pad with")
        self.tokenizer: Any = tokenizer
        self.query_id, self.document_id, skip = marker_ids(files, tokenizer.get_vocab(), tokenizer.unk_token_id)
        self._skip = torch.tensor(skip, dtype=torch.long, device=self.device)
        hidden = int(model.config.hidden_size)
        self.dims = settings.token_dims or (layers[-1].linear.out_features if layers else hidden)
        self.max_length = settings.document_length
        self.prompts = dict(settings.prompts)
        self.memory_bytes = parameter_bytes(parts)
        packable = self.device == "cpu" and tokenizer.padding_side == "right" and PackedBert.supports(model)
        self.packed = PackedBert(model) if packable else None
        # Packed, padding costs nothing in the dense layers, so a mixed batch stays one forward pass (expanded
        # queries are all of one length anyway).
        self.group_fixed_cost = None if self.packed is not None else fixed_cost_for(self.device)

    def close(self) -> None:
        """Drop the transformer and projection weights and give the memory back."""
        self.layers = []
        super().close()

    def cost_for(self, text: str, *, is_query: bool) -> int:
        """Queries are padded to the query length; documents cost about their length."""
        s = self.settings
        if is_query:
            return s.query_length if s.do_query_expansion else min(self.cost(text) + 1, s.query_length)
        return min(self.cost(text) + 1, s.document_length)

    def _texts(self, texts: list[str], prompt: str | None) -> list[str]:
        full = [(prompt + t if prompt else t).strip() for t in texts]
        return [t.lower() for t in full] if self.settings.lowercase else full

    def encode_items(
        self, texts: list[str], prompt: str | None, is_query: bool, output_types: tuple[str, ...]
    ) -> list[Encoded]:
        """Token vectors of a batch of one side."""
        import torch

        s = self.settings
        full = self._texts(texts, prompt)
        marker = self.query_id if is_query else self.document_id
        length = s.query_length if is_query else s.document_length
        limit = length - 1 if marker is not None else length
        counts = self.tokenizer(full, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        counts = [len(c) + (marker is not None) for c in counts]
        expand = is_query and s.do_query_expansion
        inputs = self.tokenizer(
            full,
            padding="max_length" if expand else True,
            truncation="longest_first",
            max_length=limit,
            return_tensors="pt",
        )
        if marker is not None:
            inputs = {
                k: _insert(v, marker if k == "input_ids" else int(k == "attention_mask")) for k, v in inputs.items()
            }
        if is_query and s.attend_to_expansion_tokens:
            inputs["attention_mask"].fill_(1)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            # Expanded queries keep the rows of their padding (mask) tokens, which the packed forward leaves out.
            if self.packed is not None and not expand:
                states = self.packed.last_hidden_state(
                    inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids")
                )
            else:
                states = self.model(**inputs).last_hidden_state
            for layer in self.layers:
                states = layer(states)
            if s.token_dims:
                states = states[..., : s.token_dims]
            ids, attention = inputs["input_ids"], inputs["attention_mask"].bool()
            if is_query:
                keep = torch.ones_like(ids, dtype=torch.bool) if s.do_query_expansion else attention
            else:
                keep = attention & ~torch.isin(ids, self._skip)
            rows = [torch.nn.functional.normalize(states[i][keep[i]], p=2, dim=1) for i in range(len(full))]
            vectors = [r.float().cpu().numpy() for r in rows]
        return [
            Encoded(None, None, np.ascontiguousarray(v, dtype=np.float32), n, n > length)
            for v, n in zip(vectors, counts)
        ]


def _insert(tensor: Any, value: int) -> Any:
    """Put one column of ``value`` after the first column (PyLate's ``insert_prefix_token``)."""
    import torch

    column = torch.full((tensor.shape[0], 1), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor[:, :1], column, tensor[:, 1:]], dim=1)
