"""The ``sie-agents`` command line.

Subcommands are registered as ``"module:function"`` strings and imported only when used, so
``sie-agents models`` never imports mcp, a web framework or torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .catalog import ModelSpec
from .config import EngineConfig
from .device import DEVICES, DTYPES
from .errors import SieError

__all__ = ["add_engine_arguments", "config_from_args", "main"]

logger = logging.getLogger("sie_core.cli")

#: name -> (help, "module:function" that adds the subparser and returns its handler)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "models": ("list the model catalog and where each model's weights are", "sie_core.cli:_add_models"),
    "pull": ("download model weights ahead of time", "sie_core.cli:_add_pull"),
    "mcp": ("run the MCP server (stdio or streamable HTTP)", "sie_mcp.cli:add_mcp_command"),
    "serve": ("serve models over HTTP: SIE API, OpenAI embeddings, MCP at /mcp, metrics", "sie_server.serve:add_serve"),
    "export-onnx": ("make an ONNX (optionally int8) copy for the fast CPU path", "sie_core.onnx_export:add_command"),
    # sie_ray.cli imports neither ray nor a web framework until `sie-agents ray serve` runs.
    "ray": ("serve the HTTP API on Ray Serve: many replicas, one endpoint", "sie_ray.cli:add_ray_command"),
}

Handler = Callable[[argparse.Namespace], int]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every engine-backed command shares; each also reads its ``SIE_*`` variable."""
    group = parser.add_argument_group("engine")
    group.add_argument("--config", dest="config_file", help="TOML or JSON config file (SIE_CONFIG)")
    group.add_argument("--device", choices=DEVICES, help="device for models (SIE_DEVICE; default auto)")
    group.add_argument("--dtype", choices=DTYPES, help="weights dtype (SIE_DTYPE; default auto)")
    group.add_argument("--backend", choices=("torch", "onnx"), help="default backend (SIE_BACKEND)")
    group.add_argument("--max-loaded-models", type=int, help="most models held at once (SIE_MAX_LOADED_MODELS)")
    group.add_argument("--memory-budget-mb", type=float, help="memory budget for weights (SIE_MEMORY_BUDGET_MB)")
    group.add_argument("--idle-timeout", dest="idle_timeout_s", type=float, help="unload models idle this long, s")
    group.add_argument("--max-batch-size", type=int, help="most items per forward pass (SIE_MAX_BATCH_SIZE)")
    group.add_argument("--max-items-per-call", type=int, help="most items per call (SIE_MAX_ITEMS_PER_CALL)")
    group.add_argument("--max-text-chars", type=int, help="longest text accepted (SIE_MAX_TEXT_CHARS)")
    group.add_argument("--cache-dir", help="Hugging Face cache folder (SIE_CACHE_DIR)")
    group.add_argument("--offline", action="store_true", default=None, help="never download (SIE_OFFLINE)")
    group.add_argument(
        "--num-threads",
        type=int,
        help="CPU threads for inference (SIE_NUM_THREADS; default: the CPUs this process may use)",
    )
    group.add_argument(
        "--model",
        dest="extra_models",
        action="append",
        metavar="TASK=ID[=PATH]",
        help="serve an extra model (repeatable), e.g. encode=my-org/my-embedder or encode=mine=/models/mine",
    )
    group.add_argument(
        "--base-url",
        help="use the models of a running SIE-compatible server (`sie-agents serve`) instead of loading them here "
        "(SIE_BASE_URL)",
    )
    group.add_argument("--api-key", help="bearer token for --base-url (SIE_API_KEY; prefer the variable)")
    group.add_argument("--log-level", default="INFO", help="log level on stderr (default INFO)")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> EngineConfig:
    """Build the EngineConfig for a command: environment and config file, then flags, then ``overrides``."""
    import os

    env = dict(os.environ)
    if getattr(args, "config_file", None):
        env["SIE_CONFIG"] = args.config_file
    flags = {
        name: getattr(args, name, None)
        for name in (
            "device",
            "dtype",
            "backend",
            "max_loaded_models",
            "memory_budget_mb",
            "idle_timeout_s",
            "max_batch_size",
            "max_items_per_call",
            "max_text_chars",
            "cache_dir",
            "offline",
            "num_threads",
            "base_url",
            "api_key",
        )
    }
    models = [_parse_model_flag(v) for v in getattr(args, "extra_models", None) or []]
    flags.update(overrides)
    return EngineConfig.from_env(env, models=tuple(models), **flags)


def _parse_model_flag(value: str) -> ModelSpec:
    parts = value.split("=", 2)
    if len(parts) < 2 or parts[0] not in ("encode", "score", "extract") or not parts[1]:
        raise SieError(f"--model {value!r}: expected TASK=ID or TASK=ID=PATH with TASK encode, score or extract")
    return ModelSpec(id=parts[1], task=parts[0], path=parts[2] if len(parts) == 3 else None)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr (stdout may belong to the MCP stdio protocol)."""
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# ---------------------------------------------------------------------- models
def _add_models(sub: argparse.ArgumentParser) -> Handler:
    sub.add_argument("--task", choices=("encode", "score", "extract"), help="only models for this task")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_engine_arguments(sub)
    return _run_models


def model_availability(spec: ModelSpec, config: EngineConfig) -> str:
    """Where a model's weights would come from right now, without downloading: a short phrase."""
    from .sources import resolve_source

    try:
        return resolve_source(spec, config, allow_download=False).origin
    except SieError:
        return "not available offline (download needed)" if spec.repo_id else "missing"


def _run_models(args: argparse.Namespace) -> int:
    from .catalog import Catalog

    config = config_from_args(args)
    catalog = Catalog.builtin().with_additions(config.models)
    rows: list[dict[str, Any]] = []
    for spec in catalog:
        if args.task and spec.task != args.task:
            continue
        default = config.default_models.get(spec.task) == spec.id
        rows.append(
            {
                "id": spec.id,
                "task": spec.task,
                "default": default,
                "weights": model_availability(spec, config),
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(str(r["id"])) for r in rows), default=10)
    print(f"{'MODEL':<{width}}  {'TASK':<7}  WEIGHTS")
    for r in rows:
        mark = " (default)" if r["default"] else ""
        print(f"{r['id']:<{width}}  {r['task']:<7}  {r['weights']}{mark}")
    return 0


# ---------------------------------------------------------------------- pull
def _add_pull(sub: argparse.ArgumentParser) -> Handler:
    sub.add_argument("models", nargs="+", metavar="MODEL", help="model ids (catalog ids, aliases or hub ids)")
    add_engine_arguments(sub)
    return _run_pull


def _run_pull(args: argparse.Namespace) -> int:
    from .catalog import Catalog
    from .sources import download, resolve_source

    config = config_from_args(args)
    catalog = Catalog.builtin().with_additions(config.models)
    failed = 0
    for name in args.models:
        spec = catalog.get(name) or ModelSpec(id=name, task="encode")
        try:
            source = resolve_source(spec, config, allow_download=False)
            print(f"{spec.id}: already available ({source.origin})", file=sys.stderr)
            continue
        except SieError:
            pass
        if config.offline:
            print(f"{spec.id}: not available and offline mode forbids downloading", file=sys.stderr)
            failed += 1
            continue
        if spec.repo_id is None:
            print(f"{spec.id}: a local-only model; nothing to download", file=sys.stderr)
            failed += 1
            continue
        print(f"{spec.id}: downloading from the Hugging Face hub ...", file=sys.stderr)
        try:
            backend = spec.backend or config.backend or "torch"
            folder = download(
                spec.repo_id,
                revision=spec.revision,
                cache_dir=config.cache_dir,
                backend=backend,
                onnx_file=spec.onnx_file,
            )
        except Exception as exc:
            print(f"{spec.id}: download failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{spec.id}: ready in {folder}", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------- main
def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The full parser and the handler of each subcommand."""
    parser = argparse.ArgumentParser(
        prog="sie-agents",
        description="One inference engine for many models: encode, score and extract, the model named per call.",
    )
    parser.add_argument("--version", action="version", version=f"sie-agents {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for name, (help_text, target) in SUBCOMMANDS.items():
        module_name, function = target.split(":")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        handlers[name] = getattr(importlib.import_module(module_name), function)(sub)
    return parser, handlers


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sie-agents`` command."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(getattr(args, "log_level", "INFO"))
    try:
        return handlers[args.command](args)
    except SieError as exc:
        print(f"sie-agents {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
