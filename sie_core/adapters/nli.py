"""Zero-shot text classification with an NLI sequence-classification model, on torch.

Exactly transformers' ``zero-shot-classification`` pipeline: each class becomes the hypothesis
``hypothesis_template.format(class)`` (the catalog entry's ``options.hypothesis_template``, else the
pipeline's default ``"This example is {}."``) paired with the text, truncated ``only_first`` so the
hypothesis is never cut; the entailment logit's index comes from the model's ``label2id`` (the first label
starting with "entail"). Single-label: a softmax of the entailment logits over the classes. Multi-label (or
one class): per class, a softmax of (contradiction, entailment) logits, contradiction being index 0 unless
entailment is. Every class is returned with its score, best first; ``threshold`` does not apply.

Windows are counted in the tokenizer's tokens, leaving room for the hypothesis, so no window is cut.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["DEFAULT_TEMPLATE", "NliClassifier", "nli_scores"]

DEFAULT_TEMPLATE = "This example is {}."
#: Tokens kept free in each window for the hypothesis and the special tokens.
_HYPOTHESIS_TOKENS = 64
#: Most (text, hypothesis) pairs in one forward pass.
_PAIRS_PER_PASS = 64


def nli_scores(logits: np.ndarray, entailment_id: int, multi_label: bool) -> np.ndarray:
    """Class scores from one text's logits (classes x NLI labels), as the pipeline's postprocess computes them."""
    if multi_label or logits.shape[0] == 1:
        contradiction_id = -1 if entailment_id == 0 else 0
        pair = logits[..., [contradiction_id, entailment_id]]
        scores = np.exp(pair) / np.exp(pair).sum(-1, keepdims=True)
        return scores[..., 1]
    entail = logits[..., entailment_id]
    return np.exp(entail) / np.exp(entail).sum(-1, keepdims=True)


class NliClassifier(ExtractorAdapter):
    """An NLI model as a zero-shot classifier; a window's scores equal the zero-shot-classification pipeline's."""

    name = "nli"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        options = dict(spec.options)
        self.template = str(options.pop("hypothesis_template", DEFAULT_TEMPLATE))
        if self.template.format("x") == self.template:
            raise ModelLoadError(f"model {spec.id!r}: hypothesis_template {self.template!r} has no {{}} for the class")
        with stdout_to_stderr():
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(source.path), local_files_only=True, trust_remote_code=spec.trust_remote_code, **options
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.entailment_id = next(
            (int(i) for label, i in model.config.label2id.items() if label.lower().startswith("entail")), -1
        )
        if self.entailment_id == -1:
            raise ModelLoadError(
                f"model {spec.id!r} is not an NLI model: its label2id {dict(model.config.label2id)} has no "
                "label starting with 'entail'"
            )
        model = model.to(self.device)
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        self.model: Any = model
        limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        if not 0 < limit < 100_000:
            limit = int(getattr(model.config, "max_position_embeddings", 512))
        if spec.max_length:
            limit = min(limit, int(spec.max_length))
        self.max_length = max(16, limit - _HYPOTHESIS_TOKENS)
        self.memory_bytes = parameter_bytes(model)

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """The tokenizer's tokens (the window unit, so a window plus its hypothesis fits the model)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"] if b > a]

    def _tokenize(self, pairs: list[list[str]]) -> Any:
        try:
            return self.tokenizer(pairs, padding=True, truncation="only_first", return_tensors="pt")
        except Exception as exc:  # the pipeline's own fallback: a text too short to truncate
            if "too short" not in str(exc):
                raise
            return self.tokenizer(pairs, padding=True, truncation=False, return_tensors="pt")

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """Score every (window, class) pair; per window, the classes best first."""
        import torch

        classes = list(task.classes)
        pairs = [[i.text, self.template.format(c)] for i in inputs for c in classes]
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(pairs), _PAIRS_PER_PASS):
                encoded = self._tokenize(pairs[start : start + _PAIRS_PER_PASS]).to(self.device)
                names = [n for n in self.tokenizer.model_input_names if n in encoded]
                chunks.append(self.model(**{n: encoded[n] for n in names}).logits.float().cpu().numpy())
        logits = np.concatenate(chunks).reshape(len(inputs), len(classes), -1)
        out = []
        for row in logits:
            scores = nli_scores(row, self.entailment_id, task.multi_label)
            order = list(reversed(scores.argsort()))
            out.append({"classifications": [{"label": classes[i], "score": float(scores[i])} for i in order]})
        return out

    def close(self) -> None:
        """Drop the model."""
        self.model = None
        self.tokenizer = None
        super().close()
