"""sie_core: one inference engine that serves many models; the model id is an argument of every call.

>>> from sie_core import Engine, Item
>>> engine = Engine()  # nothing loads yet; torch is not even imported
>>> engine.encode("sentence-transformers/all-MiniLM-L6-v2", Item(text="Berlin office revenue"))  # doctest: +SKIP
"""

from __future__ import annotations

from .catalog import Catalog, ModelSpec, PackageSource
from .config import DEFAULT_MODELS, EngineConfig, load_config_file
from .engine import Engine, EngineListener
from .errors import (
    EngineClosedError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    ModelLoadingError,
    OverloadedError,
    RemoteError,
    RemoteUnavailableError,
    SieError,
    UnknownModelError,
    WrongTaskError,
)
from .results import (
    Classification,
    EncodeResult,
    Entity,
    ExtractResult,
    ModelInfo,
    Relation,
    ScoreEntry,
    ScoreResult,
    SparseVector,
)
from .types import TASKS, Item, ItemLike, OutputDtype, Task
from .vectors import maxsim

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODELS",
    "TASKS",
    "Catalog",
    "Classification",
    "EncodeResult",
    "Engine",
    "EngineClosedError",
    "EngineConfig",
    "EngineListener",
    "Entity",
    "ExtractResult",
    "InferenceError",
    "InvalidInputError",
    "Item",
    "ItemLike",
    "ModelInfo",
    "ModelLoadError",
    "ModelLoadingError",
    "ModelSpec",
    "OutputDtype",
    "OverloadedError",
    "PackageSource",
    "Relation",
    "RemoteError",
    "RemoteUnavailableError",
    "ScoreEntry",
    "ScoreResult",
    "SparseVector",
    "SieError",
    "Task",
    "UnknownModelError",
    "WrongTaskError",
    "load_config_file",
    "maxsim",
    "__version__",
]
