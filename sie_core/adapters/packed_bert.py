"""A BERT encoder run over a batch's real tokens only (no padding in the dense layers).

Concurrent callers bring texts of any length into one batch. Run as Hugging Face runs it, every text is padded to
the longest, and on a CPU the wasted rows cost as much as real ones: in a batch of 32 random sentences of 4-40
words, about 40 % of the dense layers' work is padding. Here the embeddings, the Q/K/V and output projections and
the feed-forward layers run on the packed ``[tokens, hidden]`` rows of the real tokens, and attention runs within
each text's own rows (one unmasked scaled-dot-product call per text and layer: on CPU no slower than one padded,
masked call for the batch, and far cheaper when one long text shares a batch with short ones). The result is the
same model function: hidden states equal ``BertModel``'s within float rounding (tests/sie_core/test_packed_bert.py).

Used on CPU for a plain ``BertModel`` with absolute positions in eval mode: sentence-transformers encoders (MiniLM,
BGE, E5, ...), ``BertForSequenceClassification`` rerankers (the ms-marco cross-encoders), ColBERT transformers and
SPLADE's ``BertForMaskedLM`` (whose vocabulary head then also sees only real tokens). Anything else (other
architectures, decoders, cross-attention, other attention implementations, unknown pipeline modules) runs the
library's own forward.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PackedBert", "packed_pipeline", "run_packed"]

_ATTENTION = ("sdpa", "eager", None)

# sentence-transformers modules after the transformer that read only token_embeddings and attention_mask.
_TAIL_MODULES = frozenset({"Pooling", "Normalize", "Dense", "LayerNorm", "Dropout"})
# What the first (Transformer) module's model must be, per the feature it writes.
_MODELS = {
    "token_embeddings": ("BertModel", "last_hidden_state"),
    "scores": ("BertForSequenceClassification", "logits"),
}


class PackedBert:
    """The packed forward of one ``transformers`` ``BertModel``.

    Args:
        model: The ``BertModel`` (its modules and weights are used as they are; nothing is copied).
    """

    def __init__(self, model: Any) -> None:
        self.classifier = model if type(model).__name__ == "BertForSequenceClassification" else None
        self.model = model.bert if self.classifier is not None else model
        config = self.model.config
        self.heads = int(config.num_attention_heads)
        self.head_size = int(config.hidden_size) // self.heads

    @classmethod
    def supports(cls, model: Any) -> bool:
        """Whether ``model`` is a plain encoder-only ``BertModel`` (or a sequence classifier over one) in eval mode."""
        if type(model).__name__ == "BertForSequenceClassification":
            if getattr(model, "training", True) or model.bert.pooler is None:
                return False
            model = model.bert
        if type(model).__name__ != "BertModel" or getattr(model, "training", True):
            return False
        config = model.config
        return (
            getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not getattr(config, "is_decoder", False)
            and not getattr(config, "add_cross_attention", False)
            and getattr(config, "_attn_implementation", None) in _ATTENTION
            and int(config.hidden_size) % int(config.num_attention_heads) == 0
            and not getattr(config, "chunk_size_feed_forward", 0)
        )

    def last_hidden_state(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """``BertModel(...).last_hidden_state`` for a right-padded batch, padded rows left at zero.

        Args:
            input_ids: ``[batch, length]`` token ids.
            attention_mask: ``[batch, length]``, 1 for real tokens; each row's real tokens come first.
            token_type_ids: ``[batch, length]`` segment ids, or None for all zeros.
        """
        batch, length = input_ids.shape
        x, _ = self.packed_states(input_ids, attention_mask, token_type_ids)
        padded = x.new_zeros(batch * length, x.shape[-1])
        padded[attention_mask.bool().reshape(-1).nonzero().squeeze(1)] = x
        return padded.view(batch, length, x.shape[-1])

    def packed_states(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> tuple[Any, list[int]]:
        """The last hidden states of the real tokens only, ``[tokens, hidden]`` text after text, and their counts.

        Same arguments as :meth:`last_hidden_state`.
        """
        import torch

        batch, length = input_ids.shape
        mask = attention_mask.bool()
        rows = mask.reshape(-1).nonzero().squeeze(1)  # where each real token sits in the padded layout
        positions = torch.arange(length, device=input_ids.device).expand(batch, length)

        embeddings = self.model.embeddings
        ids = input_ids.reshape(-1)[rows]
        types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids.reshape(-1)[rows]
        x = embeddings.word_embeddings(ids) + embeddings.token_type_embeddings(types)
        x = x + embeddings.position_embeddings(positions.reshape(-1)[rows])
        x = embeddings.LayerNorm(x)

        lengths: list[int] = mask.sum(1).tolist()
        for layer in self.model.encoder.layer:
            attention = layer.attention.self
            context = self._attend(attention.query(x), attention.key(x), attention.value(x), lengths)
            output = layer.attention.output
            x = output.LayerNorm(output.dense(context) + x)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(inner) + x)
        return x, lengths

    def logits(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """``BertForSequenceClassification(...).logits``: the classifier over the pooled first token."""
        assert self.classifier is not None, "logits() needs a BertForSequenceClassification"
        hidden = self.last_hidden_state(input_ids, attention_mask, token_type_ids)
        return self.classifier.classifier(self.model.pooler(hidden))

    def forward(self, features: dict[str, Any]) -> Any:
        """What the model computes for sentence-transformers' features: hidden states, or a classifier's logits."""
        inputs = (features["input_ids"], features["attention_mask"], features.get("token_type_ids"))
        return self.logits(*inputs) if self.classifier is not None else self.last_hidden_state(*inputs)

    def _attend(self, q: Any, k: Any, v: Any, lengths: list[int]) -> Any:
        """Scaled dot-product attention within each text's own rows (no padding, so no mask)."""
        import torch
        import torch.nn.functional as F

        def heads(t: Any) -> Any:
            return t.view(-1, self.heads, self.head_size).split(lengths)

        out = [
            F.scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1)).transpose(0, 1)
            for qs, ks, vs in zip(heads(q), heads(k), heads(v), strict=True)
        ]
        return torch.cat(out).reshape(q.shape)


def packed_pipeline(model: Any) -> PackedBert | None:
    """A :class:`PackedBert` for a sentence-transformers model whose first module it can compute exactly.

    That is: a ``Transformer`` module over a plain BERT (``BertModel`` writing ``token_embeddings``, or
    ``BertForSequenceClassification`` writing ``scores``), right padding, no hidden states asked for, and after it
    only modules that read the token embeddings and attention mask (pooling, normalisation, dense layers).
    """
    modules = list(model)
    first = modules[0] if modules else None
    if type(first).__name__ != "Transformer":
        return None
    inner = getattr(first, "model", None) or getattr(first, "auto_model", None)
    output = getattr(first, "module_output_name", None)
    expected = _MODELS.get(output) if isinstance(output, str) else None
    if inner is None or expected is None or type(inner).__name__ != expected[0] or not PackedBert.supports(inner):
        return None
    text = (getattr(first, "modality_config", None) or {}).get("text", {})
    if text.get("method", "forward") != "forward" or text.get("method_output_name") != expected[1]:
        return None
    if inner.config.output_hidden_states or any(type(m).__name__ not in _TAIL_MODULES for m in modules[1:]):
        return None
    if getattr(getattr(model, "tokenizer", None), "padding_side", "right") != "right":
        return None
    return PackedBert(inner)


def run_packed(model: Any, packed: PackedBert, inputs: list[Any], output: str, prompt: str | None = None) -> Any:
    """Run a sentence-transformers model on one batch with its transformer packed; ``features[output]``.

    The features come from the model's own ``preprocess`` (prompts, truncation, pairs), so only the transformer's
    forward differs from ``SentenceTransformer.encode`` / ``CrossEncoder.predict``.
    """
    import torch

    modules = list(model)
    with torch.inference_mode():
        features = model.preprocess(inputs, prompt=prompt)
        features[modules[0].module_output_name] = packed.forward(features)
        for module in modules[1:]:
            features = module(features)
        return features[output]
