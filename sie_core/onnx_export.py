"""Export a torch model to ONNX (fp32, optionally dynamic int8) for the fast CPU backend: ``sie-agents export-onnx``.

The export is a self-contained folder: ``model.onnx`` (fp32), optionally ``model_qint8.onnx``, the tokenizer,
``config.json`` and ``sie_export.json`` (task, pooling, normalization, max length, prompts, and which graph the
engine uses). By default it lands in the engine's ONNX folder keyed by the model id, where the engine finds it
whenever the ONNX backend is chosen (``Engine(backend="onnx")``, ``SIE_BACKEND=onnx`` or a model's
``backend = "onnx"``). Every export is checked against the torch model before it is kept.

Torch, transformers, sentence-transformers and onnx are imported only when an export runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog, ModelSpec
from .config import EngineConfig
from .errors import InvalidInputError, ModelLoadError
from .sources import (
    EXPORT_MANIFEST,
    ModelSource,
    detect_task,
    export_folder,
    is_local_path,
    read_export_manifest,
    resolve_source,
)

__all__ = ["FP32_FILE", "INT8_FILE", "ExportResult", "add_command", "export_onnx"]

logger = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model_qint8.onnx"
DEFAULT_OPSET = 17
#: An fp32 export further than this from torch (max abs difference on the check texts) is rejected.
MAX_FP32_DIFF = 1e-3
_ENCODER_MODULES = ("Transformer", "Pooling", "Normalize")
_POOLINGS = {"mean": "mean", "cls": "cls", "lasttoken": "last"}

# Texts the graph is traced on (different lengths, so the trace keeps the padding mask) and checked on.
_TRACE_TEXTS = ["Invoice 4471 is due.", "Payment terms are net 30 days after the invoice date, said Acme GmbH."]
_CHECK_TEXTS = [
    "When is invoice 4471 from Acme GmbH due?",
    "Berlin office revenue grew in the second quarter.",
    "ok",
    "Alice Smith works for Globex Corporation in Paris; contact bob@example.com or +49 30 1234567. " * 40,
]
_CHECK_QUERY = "When is invoice 4471 from Acme GmbH due?"


@dataclass(frozen=True)
class ExportResult:
    """What an export made.

    Attributes:
        model: The model id exported.
        folder: The export folder.
        task: ``encode`` or ``score``.
        onnx_file: The graph the engine uses from this folder.
        files: Graph file per dtype (``float32``, ``int8``).
        max_abs_diff: Largest difference between the fp32 graph and torch on the check texts (the model's own
            vectors, as ``SentenceTransformer.encode`` gives them, or raw logits).
        int8_agreement: For int8: the lowest cosine to the fp32 vectors (encode) or the largest logit
            difference (score) on the check texts; None without int8.
        seconds: How long the export took.
    """

    model: str
    folder: Path
    task: str
    onnx_file: str
    files: dict[str, str] = field(default_factory=dict)
    max_abs_diff: float = 0.0
    int8_agreement: float | None = None
    seconds: float = 0.0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export_onnx(
    model: str,
    *,
    quantize: str | None = None,
    output: str | os.PathLike[str] | None = None,
    config: EngineConfig | None = None,
    opset: int = DEFAULT_OPSET,
    progress: Callable[[str], None] | None = _stderr,
) -> ExportResult:
    """Export a sentence-transformers encoder or a cross-encoder to ONNX, check it, and cache it.

    Args:
        model: A catalog id or alias, a hub id, or a local model folder.
        quantize: ``"int8"`` also writes a dynamically quantized copy, which the engine then uses.
        output: Folder to write; default the engine's ONNX folder for this model (see ``EngineConfig.onnx_dir``).
        config: Engine configuration (catalog additions, cache folders, offline mode).
        opset: ONNX opset of the fp32 graph.
        progress: Called with one line per step (default: printed to stderr); None for silence.

    Returns:
        What was written, with the check results.

    Raises:
        InvalidInputError: The model cannot be exported (wrong task or modules), or ``output`` is not an export.
        ModelLoadError: The torch weights are not available, a library is missing, or the check failed.
    """
    if quantize not in (None, "int8"):
        raise InvalidInputError(f"quantize {quantize!r} is not supported; use 'int8' or leave it out")
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    config = config or EngineConfig()
    spec, known = _spec_for(model, config)
    try:
        source = resolve_source(spec, config, allow_download=not config.offline, backends=("torch",))
    except ModelLoadError as exc:
        raise ModelLoadError(f"cannot export {spec.id!r}: its torch weights are needed. {exc}") from None
    task = spec.task if known else detect_task(source.path)
    if task not in ("encode", "score"):
        raise InvalidInputError(f"model {spec.id!r} is a {task} model; export-onnx supports encode and score models")
    target = Path(output).expanduser() if output is not None else export_folder(spec, config)
    _check_target(target)
    work = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with _subnormals_kept():
        try:
            say(f"[1/4] loading {spec.id} ({task}) with torch from {source.origin}")
            exporter = _exporter_for(spec, known, source, task, config)
            say(f"[2/4] exporting the fp32 graph (opset {opset}) to {FP32_FILE}")
            exporter.export(work / FP32_FILE, opset)
            exporter.save_metadata(work)
            files = {"float32": FP32_FILE}
            _write_manifest(work, spec, source, task, exporter.metadata(), files, FP32_FILE, {})
            diff = exporter.check_fp32(work, config)
            say(f"[3/4] fp32 graph vs torch on {len(_CHECK_TEXTS)} check texts: max abs difference {diff:.2e}")
            if not diff <= MAX_FP32_DIFF:
                raise ModelLoadError(
                    f"the ONNX export of {spec.id!r} differs from torch by {diff:.2e} (more than {MAX_FP32_DIFF:g}); "
                    "it was not kept. Use the torch backend for this model"
                )
            agreement: float | None = None
            chosen = FP32_FILE
            checks: dict[str, float] = {"fp32_max_abs_diff": diff}
            if quantize == "int8":
                say(f"[4/4] quantizing to int8 (dynamic, per-channel QInt8 weights) to {INT8_FILE}")
                _quantize(work / FP32_FILE, work / INT8_FILE)
                files["int8"] = INT8_FILE
                chosen = INT8_FILE
                agreement = exporter.check_int8(work, config)
                label = "lowest cosine to fp32" if task == "encode" else "largest logit difference to fp32"
                checks["int8_min_cosine" if task == "encode" else "int8_max_logit_diff"] = agreement
                say(f"      int8 graph: {label} on the check texts {agreement:.4f}")
            else:
                say("[4/4] no quantization asked for (add --quantize int8 for the fastest CPU graph)")
            _write_manifest(work, spec, source, task, exporter.metadata(), files, chosen, checks)
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    seconds = time.perf_counter() - started
    say(f"done in {seconds:.1f} s: {target} (the engine uses {chosen} with the ONNX backend)")
    return ExportResult(
        model=spec.id,
        folder=target,
        task=task,
        onnx_file=chosen,
        files=files,
        max_abs_diff=diff,
        int8_agreement=agreement,
        seconds=seconds,
    )


def _exporter_for(spec: ModelSpec, known: bool, source: ModelSource, task: str, config: EngineConfig) -> Any:
    """The exporter for the model's family: SPLADE and ColBERT have their own (``onnx_export_late``)."""
    from .families import encoder_family, family_of

    family = family_of(spec).name if known else (encoder_family(source.path) if task == "encode" else None)
    if family in ("splade", "colbert"):
        from .onnx_export_late import load_late_exporter

        return load_late_exporter(spec, source, str(family), config)
    return _load_torch(spec, source, task)


def config_catalog(config: EngineConfig) -> Catalog:
    """The catalog an engine with ``config`` would use."""
    return Catalog.builtin().with_additions(config.models)


def _spec_for(model: str, config: EngineConfig) -> tuple[ModelSpec, bool]:
    """The model's spec, and whether the catalog (or config) knows it (else its task is detected)."""
    spec = config_catalog(config).get(model)
    if spec is not None:
        return spec, True
    if is_local_path(model):
        folder = Path(model).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidInputError(f"model {model!r} is not a folder on this machine")
        return ModelSpec(id=model, task="encode", path=str(folder)), False
    return ModelSpec(id=model, task="encode"), False


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"output {str(target)!r} is a file; give a folder")
    if target.is_dir() and any(target.iterdir()) and not read_export_manifest(target):
        raise InvalidInputError(
            f"output folder {str(target)!r} is not empty and holds no {EXPORT_MANIFEST}; "
            "choose an empty or new folder (an earlier export there is replaced)"
        )


def _write_manifest(
    folder: Path,
    spec: ModelSpec,
    source: ModelSource,
    task: str,
    metadata: dict[str, Any],
    files: dict[str, str],
    chosen: str,
    checks: dict[str, float],
) -> None:
    import json

    import onnxruntime
    import torch
    import transformers

    manifest = {
        "format": 1,
        "model": spec.id,
        "task": task,
        "onnx_file": chosen,
        "files": files,
        **metadata,
        "exported_from": source.origin,
        "checks": checks,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    (folder / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _flushes_subnormals() -> bool:
    """Whether this thread's floating-point mode flushes subnormal numbers to zero (FTZ/DAZ)."""
    tiny = 2.0**-1060
    return tiny / 16.0 == 0.0


@contextmanager
def _subnormals_kept() -> Iterator[None]:
    """Leave the caller's thread with the floating-point mode it had.

    Tracing a transformers model for export turns on flush-to-zero in the calling thread (seen with torch
    2.13), which then silently changes every later float computation of the process (numpy, hypothesis).
    """
    before = _flushes_subnormals()
    try:
        yield
    finally:
        if not before and _flushes_subnormals():
            import torch

            torch.set_flush_denormal(False)


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep tracer, deprecation and quantizer chatter out of the output; errors still raise."""

    class _DropAdvice(logging.Filter):
        # onnxruntime.quantization logs through the root logger: per-tensor notes and generic advice.
        def filter(self, record: logging.LogRecord) -> bool:
            if record.name == "root" and record.levelno < logging.ERROR:
                return False
            return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    advice = _DropAdvice()
    root.addFilter(advice)
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout = saved
        root.removeFilter(advice)


def _quantize(fp32: Path, int8: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelLoadError(
            f"int8 quantization needs the Python package {exc.name or 'onnx'}; "
            "run: pip install 'sie-agents[onnx-export]'"
        ) from None
    with _quiet():
        # Per-channel weight scales: a few percent of cosine on short texts, at no measurable speed cost.
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)


class _Exporter:
    """One torch model being exported: traces it, saves tokenizer and config, and checks the result."""

    def __init__(self, spec: ModelSpec, task: str, model: Any, hf_model: Any, tokenizer: Any) -> None:
        self.spec = spec
        self.task = task
        self.model = model
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.input_names = ["input_ids", "attention_mask"]
        if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
            self.input_names.append("token_type_ids")
        self.meta: dict[str, Any] = {}

    def metadata(self) -> dict[str, Any]:
        return dict(self.meta)

    def export(self, path: Path, opset: int) -> None:
        import torch

        output_name = "last_hidden_state" if self.task == "encode" else "logits"
        names = self.input_names
        hf_model = self.hf_model

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = hf_model

            def forward(self, *args: Any) -> Any:
                out = self.inner(**dict(zip(names, args)))
                return out.last_hidden_state if output_name == "last_hidden_state" else out.logits

        if self.task == "encode":
            sample = self.tokenizer(_TRACE_TEXTS, padding=True, return_tensors="pt")
        else:
            sample = self.tokenizer([_CHECK_QUERY] * 2, _TRACE_TEXTS, padding=True, return_tensors="pt")
        args = tuple(sample[n] for n in names)
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
        axes[output_name] = {0: "batch", 1: "sequence"} if self.task == "encode" else {0: "batch"}
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                Graph().eval(),
                args,
                str(path),
                input_names=names,
                output_names=[output_name],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )

    def save_metadata(self, folder: Path) -> None:
        with _quiet():
            self.tokenizer.save_pretrained(str(folder))
            self.hf_model.config.save_pretrained(str(folder))
        if not (folder / "tokenizer.json").is_file():
            raise ModelLoadError(
                f"model {self.spec.id!r} has no fast tokenizer (tokenizer.json), which the ONNX backend needs"
            )

    def _onnx_adapter(self, folder: Path, onnx_file: str, config: EngineConfig) -> Any:
        from .adapters.onnx_encoder import OnnxEncoder
        from .adapters.onnx_scorer import OnnxScorer

        probe = ModelSpec(id=self.spec.id, task=self.task)
        source = ModelSource(folder, "onnx", f"ONNX export {folder}", onnx_file)
        check_config = config.replace(device="cpu")
        if self.task == "encode":
            return OnnxEncoder(probe, source, check_config)
        return OnnxScorer(probe, source, check_config)

    def _torch_outputs(self) -> np.ndarray:
        import torch

        with _quiet(), torch.no_grad():
            if self.task == "encode":
                vectors = self.model.encode(
                    _CHECK_TEXTS,
                    batch_size=len(_CHECK_TEXTS),
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
                return np.asarray(vectors, dtype=np.float32)
            logits = self.model.predict(
                [[_CHECK_QUERY, t] for t in _CHECK_TEXTS],
                batch_size=len(_CHECK_TEXTS),
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            logits = np.asarray(logits, dtype=np.float32)
            return logits[:, 1] - logits[:, 0] if logits.ndim == 2 and logits.shape[1] == 2 else logits.reshape(-1)

    def _onnx_outputs(self, folder: Path, onnx_file: str, config: EngineConfig) -> np.ndarray:
        adapter = self._onnx_adapter(folder, onnx_file, config)
        try:
            if self.task == "encode":
                return np.asarray(adapter.encode(list(_CHECK_TEXTS), None)[0])
            return np.asarray(adapter.score([(_CHECK_QUERY, t) for t in _CHECK_TEXTS]))
        finally:
            adapter.close()

    def check_fp32(self, folder: Path, config: EngineConfig) -> float:
        """Largest difference between the fp32 graph (run through the ONNX adapter) and torch."""
        reference = self._torch_outputs()
        exported = self._onnx_outputs(folder, FP32_FILE, config)
        self._fp32 = exported
        return float(np.abs(exported - reference).max())

    def check_int8(self, folder: Path, config: EngineConfig) -> float:
        """Lowest cosine (encode) or largest logit difference (score) of the int8 graph against fp32."""
        quantized = self._onnx_outputs(folder, INT8_FILE, config)
        if self.task == "encode":
            a = quantized / np.linalg.norm(quantized, axis=1, keepdims=True)
            b = self._fp32 / np.linalg.norm(self._fp32, axis=1, keepdims=True)
            return float((a * b).sum(axis=1).min())
        return float(np.abs(quantized - self._fp32).max())


def _load_torch(spec: ModelSpec, source: ModelSource, task: str) -> _Exporter:
    try:
        import torch  # noqa: F401
        from sentence_transformers import CrossEncoder, SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"export-onnx needs the Python package {exc.name or exc}; run: pip install 'sie-agents[onnx-export]'"
        ) from None
    common: dict[str, Any] = {"device": "cpu", "trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    with _quiet():
        if task == "encode":
            model: Any = SentenceTransformer(str(source.path), **common)
        else:
            model = CrossEncoder(str(source.path), max_length=spec.max_length, **common)
    kinds = [type(m).__name__ for m in model]
    allowed = _ENCODER_MODULES if task == "encode" else ("Transformer",)
    extra = [k for k in kinds if k not in allowed]
    if not kinds or kinds[0] != "Transformer" or extra:
        raise InvalidInputError(
            f"model {spec.id!r} has modules {', '.join(kinds)}; export-onnx handles a transformer"
            + (" with pooling and normalization" if task == "encode" else " with its classification head")
            + "; use the torch backend for this model"
        )
    transformer = model[0]
    hf_model = transformer.auto_model if task == "encode" else model.model
    try:
        hf_model.set_attn_implementation("eager")  # the plain attention graph ORT's optimizer fuses best
    except Exception:  # some architectures support only one implementation; keep it
        logger.debug("keeping the attention implementation of %s", spec.id)
    exporter = _Exporter(spec, task, model, hf_model, model.tokenizer)
    if task == "encode":
        pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
        mode = getattr(pooling, "pooling_mode", "mean") if pooling is not None else "mean"
        if isinstance(mode, (list, tuple)):
            mode = mode[0] if len(mode) == 1 else "+".join(mode)
        if mode not in _POOLINGS or (pooling is not None and getattr(pooling, "include_prompt", True) is False):
            raise InvalidInputError(
                f"model {spec.id!r} pools with {mode!r}"
                + (" without its prompt tokens" if pooling is not None and mode in _POOLINGS else "")
                + "; the ONNX backend supports mean, cls and lasttoken pooling. Use the torch backend for it"
            )
        exporter.meta = {
            "pooling": _POOLINGS[mode],
            "normalize": any(type(m).__name__ == "Normalize" for m in model),
            "max_length": int(model.max_seq_length),
            "prompts": dict(getattr(model, "prompts", None) or {}),
            "default_prompt_name": getattr(model, "default_prompt_name", None),
            "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
            "dims": int(
                (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)() or 0
            ),
        }
    else:
        labels = int(model.num_labels)
        if labels not in (1, 2):
            raise InvalidInputError(f"model {spec.id!r} has {labels} labels; a reranker needs 1 or 2")
        exporter.meta = {"num_labels": labels, "max_length": int(model.max_seq_length)}
    return exporter


# ---------------------------------------------------------------------- command line
def add_command(sub: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``export-onnx`` arguments to its subparser and return the handler."""
    from .cli import add_engine_arguments

    sub.add_argument("model", metavar="MODEL", help="catalog id or alias, hub id, or local model folder")
    sub.add_argument("--quantize", choices=("int8",), help="also write a dynamic int8 graph and use it")
    sub.add_argument("--output", metavar="DIR", help="write here instead of the engine's ONNX folder")
    sub.add_argument("--onnx-dir", help="the engine's ONNX folder (SIE_ONNX_DIR; default ~/.cache/sie-agents/onnx)")
    sub.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    add_engine_arguments(sub)
    return _run


def _run(args: argparse.Namespace) -> int:
    from .cli import config_from_args

    config = config_from_args(args, onnx_dir=args.onnx_dir)
    result = export_onnx(args.model, quantize=args.quantize, output=args.output, config=config, opset=args.opset)
    print(result.folder)
    return 0
