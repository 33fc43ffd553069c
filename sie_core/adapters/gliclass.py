"""Zero-shot text classification with GLiClass (``pip install gliclass``), on torch.

A window's scores are gliclass's own: its pipeline builds the input (``<<LABEL>>class`` tokens, ``<<SEP>>``,
then the text, or the text first), runs ``GLiClassModel`` and turns each row's logits into scores with its
``_postprocess_logits``: a softmax over the classes for single-label (``multi_label=false``), a sigmoid per
class for multi-label. Every class is returned with its score, best first (gliclass's pipeline itself keeps
only the top class, or those above its threshold); ``threshold`` does not apply.

Windows are counted in the tokenizer's tokens, leaving a quarter of ``max_length`` for the classes; a set of
classes that does not fit there is refused by name.
"""

from __future__ import annotations

from typing import Any

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import InvalidInputError
from ..sources import ModelSource
from ._torch import parameter_bytes, prepare_torch, torch_dtype
from .base import ExtractorAdapter, stdout_to_stderr

__all__ = ["GliClassClassifier"]


class GliClassClassifier(ExtractorAdapter):
    """A GLiClass model; a window's class scores equal gliclass's pipeline on that window's text."""

    name = "gliclass"

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        super().__init__(spec, source, config)
        self.device, self.dtype = prepare_torch(config)
        from gliclass import GLiClassModel, ZeroShotClassificationPipeline
        from transformers import AutoTokenizer

        with stdout_to_stderr():
            model = GLiClassModel.from_pretrained(str(source.path), local_files_only=True, **dict(spec.options))
            tokenizer = AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
        model = model.to(self.device)
        if self.dtype != "float32":
            model = model.to(torch_dtype(self.dtype))
        model.eval()
        encoder = model.config.encoder_config
        text_config = encoder.get_text_config() if hasattr(encoder, "get_text_config") else encoder
        limit = int(getattr(text_config, "max_position_embeddings", 0) or 1024)
        self.sequence_length = min(limit, int(spec.max_length or 1024))
        self.pipeline: Any = ZeroShotClassificationPipeline(
            model,
            tokenizer,
            max_length=self.sequence_length,
            classification_type="multi-label",
            device=self.device,
            progress_bar=False,
        )
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        self.label_budget = self.sequence_length // 4
        self.max_length = self.sequence_length - self.label_budget - 2
        self.max_classes = int(getattr(model.config, "max_num_classes", 25) or 25)
        self.memory_bytes = parameter_bytes(model)

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """The tokenizer's tokens (the window unit)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"] if b > a]

    def prepare(self, task: Any, model_id: str) -> Any:
        """Refuse a set of classes that would not fit beside a window's text."""
        inner = self.pipeline.pipe
        prompt = "".join(f"{inner.label_token}{c}" for c in task.classes) + inner.sep_token
        tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if tokens > self.label_budget:
            raise InvalidInputError(
                f"the classes take {tokens} tokens; model {model_id!r} leaves {self.label_budget} beside each text "
                "window: name fewer or shorter classes"
            )
        if len(task.classes) > 4 * self.max_classes:
            raise InvalidInputError(
                f"{len(task.classes)} classes given; model {model_id!r} scores at most {4 * self.max_classes}"
            )
        return task

    def run(self, inputs: list[Any], task: Any) -> list[dict[str, Any]]:
        """One forward pass over the windows; per window every class's score, best first."""
        import torch

        inner = self.pipeline.pipe
        classes = list(task.classes)
        kind = "multi-label" if task.multi_label else "single-label"
        with torch.inference_mode():
            tokenized = inner.prepare_inputs([i.text for i in inputs], classes, same_labels=True)
            max_num_classes = inner._resolve_max_num_classes(classes, True)
            output = self.model(**tokenized, max_num_classes=max_num_classes, adapter_ids=None)
        initial = getattr(output, "uncalibrated_logits", None)
        out = []
        for i in range(len(inputs)):
            _, scores = inner._postprocess_logits(
                output.logits[i], classes, kind, 0.0, initial_logits=None if initial is None else initial[i]
            )
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])
            out.append({"classifications": [{"label": label, "score": float(s)} for label, s in ranked]})
        return out

    def close(self) -> None:
        """Drop the model."""
        self.pipeline = None
        super().close()
