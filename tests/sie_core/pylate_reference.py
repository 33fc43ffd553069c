"""Run PyLate on a ColBERT folder and save its token vectors and scores (run in PyLate's own environment).

Usage: ``python pylate_reference.py FOLDER OUT.npz '[["query", ...], ["document", ...]]'`` with ``PYTHONPATH``
pointing at the PyLate reference install (see ``hybrid_models.PYLATE_REF``). Not a test module.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from pylate import models, scores

folder, out, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
queries, documents = texts
model = models.ColBERT(folder, device="cpu")
query_vectors = model.encode(queries, is_query=True, batch_size=4)
document_vectors = model.encode(documents, is_query=False, batch_size=4)
matrix = np.array(
    [
        [
            float(scores.colbert_scores(torch.as_tensor(q)[None], torch.as_tensor(d)[None], backend="torch")[0, 0])
            for d in document_vectors
        ]
        for q in query_vectors
    ]
)
arrays = {f"q{i}": np.asarray(v, dtype=np.float32) for i, v in enumerate(query_vectors)}
arrays.update({f"d{i}": np.asarray(v, dtype=np.float32) for i, v in enumerate(document_vectors)})
np.savez(out, scores=matrix, **arrays)
