"""``sie-agents ray serve``: the HTTP API of ``sie-agents serve`` on Ray Serve, over many model replicas.

Without ``--address`` it starts a local Ray instance (bound to this machine's loopback address) for as long as
it runs; with ``--address auto`` (or ``ray://host:10001``) it deploys onto an existing cluster, and on exit
deletes its application again unless ``--detach`` leaves it running. Everything it and Ray print goes to stderr:
stdout carries nothing (the rule of every ``sie-agents`` server, which an MCP stdio client relies on).

Importing this module imports neither ray nor a web framework; the command does when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from sie_core import InvalidInputError

__all__ = ["add_ray_command", "run_ray_serve", "serve_parser"]

logger = logging.getLogger("sie_ray.cli")


def add_ray_command(sub: argparse.ArgumentParser) -> Any:
    """Add ``ray`` and its ``serve`` subcommand to the ``sie-agents`` parser; returns the handler."""
    commands = sub.add_subparsers(dest="ray_command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API on Ray Serve: many replicas, the model id as the routing key, one endpoint",
        description="Serve sie-agents' HTTP API on Ray Serve (pip install 'sie-agents[ray]').",
    )
    add_serve_arguments(serve)

    def run(args: argparse.Namespace) -> int:
        if args.ray_command != "serve":
            sub.print_help(sys.stderr)
            return 2
        return run_ray_serve(args)

    return run


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``sie-agents ray serve``: those of ``sie-agents serve`` plus the Ray ones."""
    from sie_server.serve import add_serve

    from .settings import add_ray_arguments

    add_serve(parser)
    add_ray_arguments(parser)


def serve_parser() -> argparse.ArgumentParser:
    """A parser with the flags of ``sie-agents ray serve`` (for Serve config files' ``args``)."""
    parser = argparse.ArgumentParser(prog="sie-agents ray serve", add_help=False)
    add_serve_arguments(parser)
    return parser


def run_ray_serve(args: argparse.Namespace) -> int:
    """Deploy the application and serve until SIGTERM / Ctrl-C (or return at once with ``--detach``)."""
    from .settings import settings_from_args

    settings = settings_from_args(args)
    if args.detach and not args.address:
        raise InvalidInputError("--detach needs --address: a local Ray instance ends with this process")
    _stdout_to_stderr()
    import ray
    from ray import serve

    from .app import build_app

    if logging.getLogger().level > logging.DEBUG:  # Serve logs each deployment step at INFO; ours says what matters
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    host = settings.server.host
    port = settings.server.port or _free_port(host)
    if args.address:
        ray.init(address=args.address, log_to_driver=False, logging_level=logging.WARNING, namespace="sie")
    else:
        os.environ.pop("RAY_ADDRESS", None)  # a local instance, not whatever cluster the variable names
        ray.init(
            num_cpus=args.ray_num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            namespace="sie",
            _node_ip_address="127.0.0.1",
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        keep_alive = max(1, round(settings.keep_alive_timeout_s))
        serve.start(http_options={"host": host, "port": port, "keep_alive_timeout_s": keep_alive})
        serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix, blocking=False)
        shown = f"[{host}]" if ":" in host else host
        scale = (
            f"{settings.replicas} model replica(s)"
            if settings.replicas is not None
            else f"{settings.min_replicas}-{settings.max_replicas} model replicas (autoscaling)"
        )
        logger.info(
            "listening on http://%s:%d%s (Ray Serve application %r: %s, %g CPU / %g GPU and up to %d model(s) each)",
            shown,
            port,
            settings.route_prefix.rstrip("/"),
            settings.app_name,
            scale,
            settings.num_cpus,
            settings.num_gpus,
            settings.max_models_per_replica,
        )
        if args.detach:
            return 0
        stop.wait()
        logger.info("stopping the Ray Serve application %r", settings.app_name)
    finally:
        if not args.detach:
            # A signal sent to the whole process group (Ctrl-C, `timeout`) also stops the local raylet, and Serve's
            # shutdown then waits on it for minutes: both steps are bounded, and a step that overran ends the process.
            grace = settings.server.graceful_timeout_s + 5.0
            app = settings.app_name
            stop_app = (lambda: serve.delete(app)) if args.address else serve.shutdown
            clean = _bounded(stop_app, grace, "stopping the Serve application")
            clean = _bounded(ray.shutdown, 30.0, "ray.shutdown") and clean
            if not clean:
                logging.shutdown()
                os._exit(0)
    return 0


def _bounded(step: Any, seconds: float, what: str) -> bool:
    """Run ``step`` for at most ``seconds``; False (with a warning) when it did not finish."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            step()
        except BaseException as exc:  # reported below; shutting down goes on
            errors.append(exc)

    worker = threading.Thread(target=run, name="sie-ray-shutdown", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        logger.warning("%s did not finish within %g s; exiting anyway", what, seconds)
        return False
    if errors:
        logger.warning("%s failed: %r", what, errors[0])
    return True


def _stdout_to_stderr() -> None:
    """Point file descriptor 1 at stderr, so nothing Ray or a library prints can reach stdout."""
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), 1)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
