"""The packed BERT forward: the same hidden states and vectors as the library, with no padding in the dense layers."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from sie_core import Engine, EngineConfig, ModelSpec
from sie_core.adapters.packed_bert import PackedBert, packed_pipeline

from ..conftest import MINILM
from ..tiny_models import CORPUS


def _mixed_texts(n: int, seed: int = 5) -> list[str]:
    """Texts of very different lengths (1 to about 60 words), so most rows of a batch are padding-heavy."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()
    return [" ".join(rng.choice(words) for _ in range(rng.choice([1, 3, 8, 20, 60]))) for _ in range(n)]


@pytest.fixture(scope="module")
def st_minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu").eval()


@pytest.fixture(scope="module")
def st_tiny(tiny_models):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_models["encoder"]), device="cpu").eval()


@pytest.mark.parametrize("which", ["minilm", "tiny"])
def test_hidden_states_equal_bert_models_on_every_real_token(which, st_minilm, st_tiny):
    import torch

    model = st_minilm if which == "minilm" else st_tiny
    bert = model[0].model
    assert PackedBert.supports(bert)
    texts = _mixed_texts(24)
    with torch.inference_mode():
        features = model.preprocess(texts)
        mask = features["attention_mask"].bool()
        assert mask.sum() < 0.6 * mask.numel()  # the batch is mostly padding, as the packed path is for
        ref = bert(**{k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features})
        ours = PackedBert(bert).last_hidden_state(
            features["input_ids"], features["attention_mask"], features.get("token_type_ids")
        )
    assert ours.shape == ref.last_hidden_state.shape
    # Hidden states reach about 10 in magnitude; per-text attention sums in another order (measured 3.3e-6).
    assert (ours[mask] - ref.last_hidden_state[mask]).abs().max().item() <= 5e-5
    assert not ours[~mask].any()  # padded rows stay zero (mean pooling ignores them anyway)


def test_segment_ids_of_sentence_pairs_are_used(tiny_models):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["bert"]))
    bert = AutoModel.from_pretrained(str(tiny_models["bert"])).eval()
    pairs = tokenizer(CORPUS[:4], CORPUS[4:], padding=True, return_tensors="pt")
    assert pairs["token_type_ids"].any()
    with torch.inference_mode():
        ref = bert(**pairs).last_hidden_state
        ours = PackedBert(bert).last_hidden_state(pairs["input_ids"], pairs["attention_mask"], pairs["token_type_ids"])
        without = PackedBert(bert).last_hidden_state(pairs["input_ids"], pairs["attention_mask"])
    mask = pairs["attention_mask"].bool()
    assert (ours[mask] - ref[mask]).abs().max().item() <= 5e-5
    assert (without[mask] - ref[mask]).abs().max().item() > 1e-3  # segment ids change the answer


def test_the_engine_runs_bert_encoders_packed_and_equals_sentence_transformers(st_minilm):
    """32 concurrent single-text callers (one mixed batch) get ST's own vectors; the batch is not split."""
    texts = _mixed_texts(32, seed=9)
    with Engine(EngineConfig(device="cpu", offline=True)) as engine:
        engine.load(MINILM)
        adapter = engine._backend.manager._loaded[MINILM].adapter  # type: ignore[union-attr]
        assert isinstance(adapter.packed, PackedBert) and adapter.group_fixed_cost is None

        async def callers() -> list[np.ndarray]:
            results = await asyncio.gather(*(engine.aencode(MINILM, text) for text in texts))
            return [r.dense for r in results]

        ours = np.stack(asyncio.run(callers()))
        batches = engine._backend.manager._loaded[MINILM].worker.stats.batches  # type: ignore[union-attr]
    ref = st_minilm.encode(texts, batch_size=32)
    assert np.abs(ours - ref).max() <= 1e-5
    assert batches < len(texts)  # the callers shared batches


def test_prompts_and_excluded_prompt_tokens_match_sentence_transformers(tiny_models):
    """A query prompt, with pooling that leaves the prompt's tokens out (``include_prompt=False``)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_models["encoder"]), device="cpu").eval()
    model[1].include_prompt = False
    packed = packed_pipeline(model)
    assert packed is not None
    texts = _mixed_texts(12)
    spec = ModelSpec(id="tiny-prompted", task="encode", path=str(tiny_models["encoder"]), query_prompt="query: ")
    with Engine(EngineConfig(device="cpu", offline=True, models=(spec,))) as engine:
        engine.load("tiny-prompted")
        adapter = engine._backend.manager._loaded["tiny-prompted"].adapter  # type: ignore[union-attr]
        adapter.model[1].include_prompt = False
        ours = adapter.encode(texts, "query: ")[0]
    ref = model.encode(texts, prompt="query: ", batch_size=len(texts))
    assert np.abs(ours - ref).max() <= 1e-5
    with_prompt = SentenceTransformer(str(tiny_models["encoder"]), device="cpu").encode(texts, prompt="query: ")
    assert np.abs(with_prompt - ref).max() > 1e-4  # leaving the prompt out does change the vectors


def test_models_it_cannot_compute_exactly_run_the_librarys_forward(tiny_models):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, RobertaConfig, RobertaModel

    bert = AutoModel.from_pretrained(str(tiny_models["bert"])).eval()
    assert PackedBert.supports(bert)
    assert not PackedBert.supports(bert.train())  # dropout would be skipped
    bert.eval()
    bert.config.is_decoder = True
    assert not PackedBert.supports(bert)
    bert.config.is_decoder = False
    bert.config._attn_implementation = "flex_attention"
    assert not PackedBert.supports(bert)
    roberta = RobertaModel(RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)).eval()
    assert not PackedBert.supports(roberta)  # other position scheme (padding offset)

    class Scale(torch.nn.Module):  # a module after the transformer that the packed path does not know
        def forward(self, features):
            features["sentence_embedding"] = features["sentence_embedding"] * 2
            return features

    model = SentenceTransformer(str(tiny_models["encoder"]), device="cpu").eval()
    assert packed_pipeline(model) is not None
    model.append(Scale())
    assert packed_pipeline(model) is None


def test_cross_encoder_scores_equal_cross_encoder_predict(tiny_models):
    """A BertForSequenceClassification reranker, packed: CrossEncoder.predict's raw logits, one mixed batch."""
    import torch
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(str(tiny_models["cross_encoder"]), device="cpu")
    queries = _mixed_texts(16, seed=11)
    documents = _mixed_texts(16, seed=12)
    pairs = list(zip(queries, documents, strict=True))
    ref = reference.predict([list(p) for p in pairs], activation_fn=torch.nn.Identity(), batch_size=4)
    spec = ModelSpec(id="tiny-packed-reranker", task="score", path=str(tiny_models["cross_encoder"]))
    with Engine(EngineConfig(device="cpu", offline=True, models=(spec,))) as engine:
        engine.load("tiny-packed-reranker")
        adapter = engine._backend.manager._loaded["tiny-packed-reranker"].adapter  # type: ignore[union-attr]
        assert isinstance(adapter.packed, PackedBert) and adapter.group_fixed_cost is None
        ours = adapter.score(pairs)
    assert ours.shape == (16,)
    assert np.abs(ours - np.asarray(ref).reshape(16)).max() <= 1e-5
