"""Run FlagEmbedding's BGEM3FlagModel on a folder and save its three outputs (run in FlagEmbedding's environment).

Usage: ``python flag_reference.py FOLDER OUT.npz '["text", ...]'`` with ``PYTHONPATH`` pointing at the
FlagEmbedding reference install (see ``hybrid_models.FLAG_REF``). Not a test module.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from FlagEmbedding import BGEM3FlagModel

folder, out, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
# the tiny test model has few positions: truncate where the engine does (FlagEmbedding's default is 512)
with open(f"{folder}/config.json", encoding="utf-8") as config:
    limit = json.load(config)["max_position_embeddings"]
model = BGEM3FlagModel(folder, use_fp16=False, devices="cpu", query_max_length=limit, passage_max_length=limit)
found = model.encode(texts, batch_size=256, return_dense=True, return_sparse=True, return_colbert_vecs=True)
arrays = {"dense": np.asarray(found["dense_vecs"], dtype=np.float32)}
for i, (weights, vectors) in enumerate(zip(found["lexical_weights"], found["colbert_vecs"])):
    ids = sorted(int(k) for k in weights)
    arrays[f"si{i}"] = np.asarray(ids, dtype=np.int64)
    arrays[f"sv{i}"] = np.asarray([float(weights[str(k)]) for k in ids], dtype=np.float32)
    arrays[f"m{i}"] = np.asarray(vectors, dtype=np.float32)
np.savez(out, **arrays)
