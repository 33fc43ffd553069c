"""Shared ONNX Runtime machinery: sessions, tokenizers, model metadata and padding.

Imported only when an ONNX model loads. Nothing here imports torch, so an engine that serves only ONNX
models starts with onnxruntime and tokenizers alone.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..config import EngineConfig
from ..errors import ModelLoadError
from ..sources import EXPORT_MANIFEST, ModelSource, weights_bytes
from ..threads import thread_plan

__all__ = ["ModelFiles", "OnnxGraph", "graph_task", "load_tokenizers"]

logger = logging.getLogger(__name__)

_INDEX_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_FEEDS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
# Operators only quantized graphs contain; their names sit in the graph's node list near the top of the file.
_QUANTIZED_OPS = (b"MatMulInteger", b"DynamicQuantizeLinear", b"QLinearMatMul", b"QAttention", b"MatMulNBits")
_QUANTIZED_NAMES = ("int8", "uint8", "qint", "quint", "quantized", "int4", "q4")
_SCAN_BYTES = 8 * 2**20
#: Sentence-transformers modules the ONNX encoder reproduces; any other module changes the vectors.
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
_POOLING_NAMES = {"mean": "mean", "cls": "cls", "lasttoken": "last", "last": "last"}


def read_json(path: Path) -> Any:
    """A JSON file's content, or an empty dict when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass
class ModelFiles:
    """What a model folder's small metadata files say (each empty when the file is absent).

    Attributes:
        folder: The model folder.
        config: ``config.json`` (transformers).
        st_config: ``sentence_bert_config.json``.
        st_model: ``config_sentence_transformers.json`` (prompts).
        modules: ``modules.json`` (the sentence-transformers pipeline).
        pooling: The pooling module's ``config.json``.
        tokenizer_config: ``tokenizer_config.json``.
        vectrix: ``vectrix_config.json`` (folders without ``config.json`` that state ``max_length`` there).
        manifest: ``sie_export.json`` written by ``sie-agents export-onnx``.
    """

    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    st_config: dict[str, Any] = field(default_factory=dict)
    st_model: dict[str, Any] = field(default_factory=dict)
    modules: list[dict[str, Any]] = field(default_factory=list)
    pooling: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    vectrix: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> ModelFiles:
        """Read every metadata file the ONNX adapters use from ``folder``."""
        modules = read_json(folder / "modules.json")
        modules = [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
        pooling_dir = next((m.get("path") for m in modules if _module_kind(m) == "Pooling"), None) or "1_Pooling"
        return cls(
            folder=folder,
            config=_as_dict(read_json(folder / "config.json")),
            st_config=_as_dict(read_json(folder / "sentence_bert_config.json")),
            st_model=_as_dict(read_json(folder / "config_sentence_transformers.json")),
            modules=modules,
            pooling=_as_dict(read_json(folder / pooling_dir / "config.json")),
            tokenizer_config=_as_dict(read_json(folder / "tokenizer_config.json")),
            vectrix=_as_dict(read_json(folder / "vectrix_config.json")),
            manifest=_as_dict(read_json(folder / EXPORT_MANIFEST)),
        )

    def unsupported_modules(self) -> list[str]:
        """Sentence-transformers modules (e.g. Dense) that an ONNX graph of the transformer alone lacks."""
        return [str(m.get("type")) for m in self.modules if _module_kind(m) not in _SUPPORTED_MODULES]

    def has_normalize(self) -> bool:
        """Whether the sentence-transformers pipeline ends in a Normalize module."""
        return any(_module_kind(m) == "Normalize" for m in self.modules)

    def pooling_mode(self, spec: ModelSpec) -> str:
        """``mean``, ``cls`` or ``last``: the catalog entry's, the export's, the pooling module's, else mean.

        Raises:
            ModelLoadError: The model pools in a way the ONNX encoder does not reproduce.
        """
        if spec.pooling:
            return spec.pooling
        named = self.manifest.get("pooling")
        if named is None:
            mode = self.pooling.get("pooling_mode")
            if isinstance(mode, list) and len(mode) == 1:
                mode = mode[0]
            if mode is None:  # the pre-v6 layout: one boolean per mode
                active = [k for k, v in self.pooling.items() if k.startswith("pooling_mode_") and v is True]
                legacy = {
                    "pooling_mode_cls_token": "cls",
                    "pooling_mode_mean_tokens": "mean",
                    "pooling_mode_lasttoken": "lasttoken",
                }
                modes = [legacy.get(a, a.removeprefix("pooling_mode_")) for a in active]
                mode = modes[0] if len(modes) == 1 else (modes or None)
            named = mode
        if named is None:
            return "mean"
        if self.pooling.get("include_prompt") is False:
            raise ModelLoadError(
                f"model {spec.id!r} pools without its prompt tokens, which the ONNX backend does not do; "
                "use backend 'torch' for it"
            )
        if not isinstance(named, str) or named not in _POOLING_NAMES:
            raise ModelLoadError(
                f"model {spec.id!r} uses pooling {named!r}; the ONNX backend supports mean, cls and lasttoken "
                "(set 'pooling' in its catalog entry if the files are wrong, or use backend 'torch')"
            )
        return _POOLING_NAMES[named]

    def prompts(self) -> tuple[dict[str, str], str | None]:
        """The model's named prompts and its default prompt name."""
        source = self.manifest if "prompts" in self.manifest else self.st_model
        prompts = {str(k): str(v) for k, v in _as_dict(source.get("prompts")).items() if v}
        default = source.get("default_prompt_name")
        return prompts, (str(default) if default else None)

    def max_length(self, spec: ModelSpec) -> int:
        """Tokens per input: the catalog entry's, else the model files', capped at the position embeddings."""
        candidates = (
            spec.max_length,
            self.manifest.get("max_length"),
            self.st_config.get("max_seq_length"),
            self.vectrix.get("max_length"),
            self.tokenizer_config.get("model_max_length"),
        )
        length = next((int(c) for c in candidates if isinstance(c, (int, float)) and 0 < c < 1_000_000), 512)
        positions = self.config.get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            length = min(length, positions)
        return length

    def lowercase(self) -> bool:
        """Whether sentence-transformers lowercases texts before tokenizing (``do_lower_case``)."""
        return bool(self.st_config.get("do_lower_case") or self.manifest.get("do_lower_case"))


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _module_kind(module: Mapping[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def load_tokenizers(folder: Path, files: ModelFiles, max_length: int) -> tuple[Any, Any, int]:
    """Load ``tokenizer.json`` twice: as is (to count tokens) and truncating to ``max_length``.

    The file's own padding and truncation settings are switched off (batches are padded to their longest
    row in numpy); truncation is longest-first on the model's truncation side, like transformers does.

    Returns:
        (counting tokenizer, truncating tokenizer, pad token id).
    """
    from tokenizers import Tokenizer, normalizers

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    padding = tokenizer.padding
    pad_id = padding.get("pad_id") if padding else None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if files.lowercase():
        current = tokenizer.normalizer
        steps = [normalizers.Lowercase()] + ([current] if current is not None else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
    if pad_id is None:
        pad_token = files.tokenizer_config.get("pad_token")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content")
        if isinstance(pad_token, str):
            pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        pad_id = files.config.get("pad_token_id")
    truncating = Tokenizer.from_str(tokenizer.to_str())
    side = str(files.tokenizer_config.get("truncation_side") or "right")
    truncating.enable_truncation(max_length, strategy="longest_first", direction=side)
    return tokenizer, truncating, int(pad_id) if isinstance(pad_id, int) else 0


def _providers(device: str) -> tuple[list[Any], str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    base, _, index = device.partition(":")
    if base in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        device_id = int(index or 0)
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"], f"cuda:{device_id}"
    if base == "cuda":
        raise ModelLoadError(
            f"device {device!r} was asked for, but this onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}); install onnxruntime-gpu, or use device 'cpu'"
        )
    if base == "mps":
        logger.info("ONNX models run on the CPU: onnxruntime has no Apple MPS execution provider")
    return ["CPUExecutionProvider"], "cpu"


class OnnxGraph:
    """An ONNX Runtime session set up for fast repeated calls, with the feeds its graph takes.

    On CPU a batch is cut into row chunks of similar token counts that run at the same time, one
    single-threaded ``Run`` per core (``config.num_threads``, default :func:`sie_core.threads.thread_plan`:
    the physical cores this process may use, within its affinity mask and cgroup quota): on a 2-core
    machine this beat one ``Run`` with two intra-op threads by about a quarter on batches, matched it on
    single texts, and held up far better when other work shares the cores. ``options["intra_op_num_threads"]``
    switches to intra-op threading instead (one ``Run`` per batch), e.g. for long single texts on many cores.

    Session options: all graph optimizations, sequential execution, denormals flushed to zero; extra
    ``options["session_config"]`` entries go to ``SessionOptions.add_session_config_entry`` (and win).

    Args:
        spec: The model's catalog entry (for messages and its ``options``).
        source: The folder and the graph file.
        config: Engine configuration (device, threads).

    Raises:
        ModelLoadError: The graph needs inputs this engine cannot provide, or CUDA was asked for but is missing.
    """

    def __init__(self, spec: ModelSpec, source: ModelSource, config: EngineConfig) -> None:
        import onnxruntime as ort

        if source.onnx_file is None:
            raise ModelLoadError(f"model {spec.id!r}: no ONNX graph was found in {source.path}")
        self.path = source.path / source.onnx_file
        options = dict(spec.options)
        providers, device = _providers(config.device)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        intra_op = options.get("intra_op_num_threads")
        cores = thread_plan(config.num_threads).onnx_runs
        if intra_op or device != "cpu":
            self.workers = 1
            if intra_op or config.num_threads:
                session_options.intra_op_num_threads = int(intra_op or cores)
        else:
            self.workers = cores
            session_options.intra_op_num_threads = 1
        entries = {str(k): str(v) for k, v in dict(options.get("session_config") or {}).items()}
        # Masked attention scores underflow to denormals in softmax; flushing them to zero cut softmax from ~15%
        # of a MiniLM int8 profile to noise. It applies in ORT's intra-op threads (intra-op mode); no output changes.
        entries.setdefault("session.set_denormal_as_zero", "1")
        for key, value in entries.items():
            session_options.add_session_config_entry(key, value)
        self.session: Any = ort.InferenceSession(str(self.path), sess_options=session_options, providers=providers)
        self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="sie-onnx") if self.workers > 1 else None
        self.device = device if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        #: CPU threads one batch uses (parallel runs, or one run's intra-op threads); None off the CPU.
        self.threads: int | None = (int(intra_op) if intra_op else self.workers) if self.device == "cpu" else None
        inputs = {i.name: i for i in self.session.get_inputs()}
        unknown = sorted(set(inputs) - set(_FEEDS))
        if unknown or "input_ids" not in inputs or "attention_mask" not in inputs:
            raise ModelLoadError(
                f"model {spec.id!r}: the ONNX graph {source.onnx_file} takes inputs {', '.join(inputs)}; "
                f"the ONNX backend feeds input_ids, attention_mask and optionally token_type_ids and position_ids"
            )
        self.index_dtype = _INDEX_TYPES.get(inputs["input_ids"].type, np.int64)
        self.takes_token_types = "token_type_ids" in inputs
        self.takes_positions = "position_ids" in inputs
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self.memory_bytes = weights_bytes(source)
        # On CPU, batches of a few hundred tokens stay in cache: MiniLM int8 ran 10% faster on 6-40 word texts
        # and 70% faster on 60-120 word texts with 512 instead of 16384 tokens per pass (same speed on short
        # texts, which fill max_batch_size first). Accelerators prefer big batches.
        batch_tokens = options.get("batch_tokens", 512 if self.device == "cpu" else None)
        self.batch_tokens: int | None = int(batch_tokens) if batch_tokens else None
        self.dtype = _graph_dtype(self.path, self.outputs)

    def feeds(self, encodings: Sequence[Any], pad_id: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Pad a batch of ``tokenizers`` encodings to its longest row.

        Returns:
            The graph's input arrays and each row's token count.
        """
        rows = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max())
        mask = np.arange(width) < lengths[:, None]
        ids = np.full((len(rows), width), pad_id, dtype=self.index_dtype)
        # Row-major boolean assignment fills each row's prefix in order: one numpy call for the whole batch.
        ids[mask] = np.fromiter((t for row in rows for t in row), dtype=self.index_dtype, count=int(lengths.sum()))
        feeds = {"input_ids": ids, "attention_mask": mask.astype(self.index_dtype)}
        if self.takes_token_types:
            types = np.zeros_like(ids)
            type_rows = [e.type_ids for e in encodings]
            if any(any(row) for row in type_rows):
                types[mask] = np.fromiter((t for row in type_rows for t in row), dtype=self.index_dtype)
            feeds["token_type_ids"] = types
        if self.takes_positions:
            feeds["position_ids"] = np.tile(np.arange(width, dtype=self.index_dtype), (len(rows), 1))
        return feeds, lengths

    def run(self, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph and return one output as a float32 array."""
        result = self.session.run([output], feeds)[0]
        return np.asarray(result, dtype=np.float32)

    def map_rows(
        self,
        fn: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray],
        feeds: dict[str, np.ndarray],
        lengths: np.ndarray,
    ) -> np.ndarray:
        """Apply ``fn(feeds, lengths)`` to row chunks of a batch at the same time and stack the results in order.

        Each chunk is cut to its own longest row, so chunks of short texts carry no padding of long ones.
        """
        chunks = min(self.workers, len(lengths))
        if chunks <= 1 or self._pool is None:
            return fn(feeds, lengths)
        parts = []
        for start, stop in _balanced_chunks(lengths, chunks):
            width = int(lengths[start:stop].max())
            part = {name: np.ascontiguousarray(array[start:stop, :width]) for name, array in feeds.items()}
            parts.append((part, lengths[start:stop]))
        pending = [self._pool.submit(fn, *part) for part in parts[1:]]
        first = fn(*parts[0])
        return np.concatenate([first, *(job.result() for job in pending)])

    def close(self) -> None:
        """Stop the chunk workers and drop the session."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self.session = None


def _balanced_chunks(lengths: np.ndarray, chunks: int) -> list[tuple[int, int]]:
    """Contiguous row ranges with about the same number of tokens each (at least one row each)."""
    total = np.cumsum(lengths)
    cuts = [0]
    for i in range(1, chunks):
        cut = int(np.searchsorted(total, total[-1] * i / chunks)) + 1
        cuts.append(min(max(cut, cuts[-1] + 1), len(lengths) - (chunks - i)))
    cuts.append(len(lengths))
    return list(itertools.pairwise(cuts))


def _graph_dtype(path: Path, outputs: Mapping[str, Any]) -> str:
    """``int8`` for quantized graphs, ``float16`` for half-precision ones, else ``float32``."""
    manifest = read_json(path.parent / EXPORT_MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, dict):
        for dtype, name in files.items():
            if name == path.name and dtype in ("int8", "float32"):
                return str(dtype)
    if any(marker in path.stem.lower() for marker in _QUANTIZED_NAMES):
        return "int8"
    try:
        with open(path, "rb") as graph:
            head = graph.read(_SCAN_BYTES)
    except OSError:
        head = b""
    if any(op in head for op in _QUANTIZED_OPS):
        return "int8"
    if any(o.type == "tensor(float16)" for o in outputs.values()):
        return "float16"
    return "float32"


def graph_task(path: Path) -> str | None:
    """Tell a bare ONNX graph's task from its outputs: token states → encode, one or two logits → score.

    Used for folders whose files do not say what the model is (no ``config.json``). None when unclear.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    outputs = session.get_outputs()
    if any(len(o.shape) == 3 for o in outputs):
        return "encode"
    first = outputs[0] if outputs else None
    if first is not None and len(first.shape) == 2 and first.shape[1] in (1, 2):
        return "score"
    if first is not None and len(first.shape) == 2:
        return "encode"
    return None
