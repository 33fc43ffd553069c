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


# ---------------------------------------------------------------------- extraction beyond entities (issue 11)
NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}


def build_nli(folder: Path, seed: int = 3) -> Path:
    """A 3-label sequence-classification model with an NLI label2id (entailment / neutral / contradiction)."""
    import torch
    from transformers import BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = _tokenizer(folder)
    config = _config(len(tok), num_labels=3, id2label=NLI_LABELS, label2id={v: k for k, v in NLI_LABELS.items()})
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def build_gliclass(folder: Path, backbone: Path, seed: int = 4) -> Path:
    """A uni-encoder GLiClass on the tiny BERT (its <<LABEL>>/<<SEP>>/<<EXAMPLE>> tokens added), saved."""
    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(backbone))
    tok.add_tokens(["<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"], special_tokens=True)
    encoder = json.loads((backbone / "config.json").read_text())
    config = GLiClassModelConfig(
        encoder_config=encoder,
        encoder_model=str(backbone),
        class_token_index=tok.convert_tokens_to_ids("<<LABEL>>"),
        text_token_index=tok.convert_tokens_to_ids("<<SEP>>"),
        example_token_index=tok.convert_tokens_to_ids("<<EXAMPLE>>"),
        vocab_size=len(tok),
        architecture_type="uni-encoder",
        max_num_classes=25,
        scorer_mlp_hidden_size=64,
        scorer_num_heads=2,
    )
    model = GLiClassModel(config, from_pretrained=True)
    # The backbone was resized to the tokenizer; saved so, loading resizes nothing (a meta-device resize fails).
    model.config.encoder_config.vocab_size = len(tok)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def build_glirel(folder: Path, backbone: Path, seed: int = 5, max_len: int = 64) -> Path:
    """A GLiREL on the tiny BERT backbone, built from a config by GLiREL's own class and saved."""
    import argparse

    import torch
    from glirel import GLiREL

    torch.manual_seed(seed)
    config = argparse.Namespace(
        model_name=str(backbone),
        name="tiny",
        max_width=4,
        hidden_size=32,
        dropout=0.1,
        fine_tune=True,
        subtoken_pooling="first",
        span_mode="marker",
        span_marker_mode="markerv1",
        rel_mode="marker",
        scorer="dot",
        label_embed_strategy="label",
        refine_prompt=False,
        refine_relation=False,
        ffn_mul=4,
        loss_func="binary_cross_entropy_loss",
        alpha=0.5,
        gamma=2,
        max_len=max_len,
        max_types=10,
        shuffle_types=False,
        random_drop=False,
        max_neg_type_ratio=1,
        num_train_rel_types=10,
        num_unseen_rel_types=5,
        top_k=1,
        max_entity_pair_distance=None,
        fixed_relation_types=True,
        add_entity_markers=False,
        coreference_label=None,
        eval_threshold=0.01,
    )
    model = GLiREL(config)
    model.save_pretrained(str(folder))
    return folder


def build_gliner2(folder: Path, backbone: Path, seed: int = 6, max_len: int = 64) -> Path:
    """A GLiNER2 on the tiny BERT backbone, built from its config by gliner2's own class and saved."""
    import torch
    from gliner2 import Extractor, ExtractorConfig

    torch.manual_seed(seed)
    config = ExtractorConfig(model_name=str(backbone), max_width=4, counting_layer="count_lstm", max_len=max_len)
    model = Extractor(config)
    model.save_pretrained(str(folder))
    return folder


def build_bert512(folder: Path, seed: int = 7) -> Path:
    """The tiny BERT with 512 positions (GLiNER2 and GLiREL put their prompts before up to 64 words of text)."""
    import torch
    from transformers import BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = _tokenizer(folder)
    config = _config(len(tok))
    config.max_position_embeddings = 512
    BertModel(config).save_pretrained(folder)
    return folder


_EXTRA_BUILDERS = {
    "nli": lambda scratch, root, paths: build_nli(scratch / "nli"),
    "gliclass": lambda scratch, root, paths: build_gliclass(scratch / "gliclass", paths["bert"]),
    "glirel": lambda scratch, root, paths: build_glirel(scratch / "glirel", build_extra(root, "bert512")),
    "bert512": lambda scratch, root, paths: build_bert512(scratch / "bert512"),
    "gliner2": lambda scratch, root, paths: build_gliner2(scratch / "gliner2", build_extra(root, "bert512")),
}


def build_extra(root: Path, name: str) -> Path:
    """One of the issue-11 tiny models (nli, gliclass, glirel, gliner2; bert512), built once under ``root``.

    Built in a temporary folder and renamed into place, so concurrent test runs never see half a model.
    """
    import shutil
    import tempfile

    folder = root / name
    if (folder / ".built").is_file():
        return folder
    paths = build_all(root)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        built = _EXTRA_BUILDERS[name](scratch, root, paths)
        (built / ".built").write_text("ok")
        try:
            built.rename(folder)
        except OSError:  # another run finished first
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
