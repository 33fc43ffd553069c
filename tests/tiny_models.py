"""Tiny randomly initialised models, built locally in seconds, for code paths with no real weights here."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "Invoice 4471 from Acme GmbH is due on 30 June.",
    "Berlin office revenue grew in the second quarter.",
    "Alice Smith works for Globex Corporation in Paris.",
    "The quick brown fox jumps over the lazy dog.",
    "Contact bob@example.com or call +49 30 1234567.",
    "Payment terms: net 30 days after the invoice date.",
    "Machine learning models turn text into vectors.",
    "query passage document search relevant answer",
]


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS * 4, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=128)
    fast.save_pretrained(folder)
    return fast


def _config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **extra,
    )


def build_bert(folder: Path, seed: int = 0) -> Path:
    """A tiny BERT backbone + WordPiece tokenizer."""
    import torch
    from transformers import BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = _tokenizer(folder)
    BertModel(_config(len(tok))).save_pretrained(folder)
    return folder


def build_encoder(folder: Path, backbone: Path) -> Path:
    """A sentence-transformers folder: tiny BERT, mean pooling, normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(backbone), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()])
    model.prompts = {"query": "query: ", "document": "passage: "}
    model.save(str(folder))
    return folder


def build_cross_encoder(folder: Path, seed: int = 1) -> Path:
    """A single-logit sequence-classification model that CrossEncoder loads."""
    import torch
    from transformers import BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = _tokenizer(folder)
    BertForSequenceClassification(_config(len(tok), num_labels=1)).save_pretrained(folder)
    return folder


def build_gliner(folder: Path, backbone: Path, max_len: int = 32) -> Path:
    """A GLiNER on the tiny BERT backbone (random span scores near 0.5)."""
    import torch
    from gliner import GLiNER, GLiNERConfig

    torch.manual_seed(2)
    config = GLiNERConfig(model_name=str(backbone), hidden_size=32, max_width=4, max_len=max_len, span_mode="markerV0")
    model = GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True)
    model.save_pretrained(str(folder))
    return folder


def build_all(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root`` (skipping ones already built) and return their folders."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "built.json"
    paths = {
        "bert": root / "bert",
        "encoder": root / "encoder",
        "cross_encoder": root / "cross_encoder",
        "gliner": root / "gliner",
    }
    if marker.is_file():
        return paths
    build_bert(paths["bert"])
    build_encoder(paths["encoder"], paths["bert"])
    build_cross_encoder(paths["cross_encoder"])
    build_gliner(paths["gliner"], paths["bert"])
    marker.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return paths
