"""How the Ray Serve application is sized and configured: :class:`RaySettings`, built from flags or a mapping.

The command line (``sie-agents ray serve``) and a Serve config file (``import_path: sie_ray.app:build`` with
``args:``) take the same options under the same names: the flags of ``sie-agents serve`` (engine and server) plus
the Ray ones below. Nothing here imports ray.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sie_core import EngineConfig, InvalidInputError

__all__ = ["DEFAULT_MAX_MODELS_PER_REPLICA", "RaySettings", "add_ray_arguments", "settings_from_args"]

#: Models a replica holds at once when neither --max-models-per-replica nor --max-loaded-models says.
DEFAULT_MAX_MODELS_PER_REPLICA = 2


@dataclass(frozen=True)
class RaySettings:
    """Everything the Ray application is told: the engine, the HTTP server, and the Ray deployments.

    Attributes:
        engine: The engine configuration every replica (and the ingress, for validation) uses.
        server: The HTTP settings of the ingress (``sie_server.ServerSettings``: token, body limit, load wait...).
        app_name: The Serve application's name.
        route_prefix: Where Serve's HTTP proxy mounts the ingress.
        replicas: Fixed number of model replicas (None when autoscaling).
        min_replicas: Autoscaling lower bound (with ``max_replicas``).
        max_replicas: Autoscaling upper bound.
        target_ongoing_requests: Autoscaling target of requests in flight per replica (the engine batches them).
        num_cpus: CPUs Ray reserves per model replica (fractional allowed).
        num_gpus: GPUs Ray reserves per model replica (fractional: several replicas share one GPU).
        max_models_per_replica: Models one replica holds at once: Ray's multiplexing LRU and the engine's
            ``max_loaded_models`` are both set to it.
        max_ongoing_requests: Requests one model replica takes at once (the engine batches what arrives); past it,
            Ray sends a model's requests to another replica too, which then loads the model.
        ingress_replicas: Replicas of the HTTP ingress.
        ingress_num_cpus: CPUs Ray reserves per ingress replica.
        ingress_max_ongoing_requests: Requests one ingress replica takes at once.
        call_timeout_s: Longest an ingress waits for a replica's answer before answering 503.
        lost_replica_retries: Times an idempotent call is sent again when its replica died under it.
        health_check_period_s: How often Serve checks each replica (a dead one is replaced).
        report_interval_s: How often replicas report their models, loads and queue depth for ``/metrics``.
        allowed_hosts: Extra ``Host`` headers the ingress's ``/mcp`` accepts (DNS-rebinding check).
        keep_alive_timeout_s: Idle time after which Serve's HTTP proxy closes a connection.
    """

    engine: EngineConfig = field(default_factory=EngineConfig)
    server: Any = None
    app_name: str = "sie"
    route_prefix: str = "/"
    replicas: int | None = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 16.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_models_per_replica: int = DEFAULT_MAX_MODELS_PER_REPLICA
    max_ongoing_requests: int = 32
    ingress_replicas: int = 1
    ingress_num_cpus: float = 0.5
    ingress_max_ongoing_requests: int = 512
    call_timeout_s: float = 300.0
    lost_replica_retries: int = 2
    health_check_period_s: float = 10.0
    report_interval_s: float = 1.0
    allowed_hosts: tuple[str, ...] = ()
    keep_alive_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.server is None:
            from sie_server.common import ServerSettings

            object.__setattr__(self, "server", ServerSettings())
        autoscaling = self.min_replicas is not None or self.max_replicas is not None
        if autoscaling:
            lower, upper = self.min_replicas, self.max_replicas
            if lower is None or upper is None:
                raise InvalidInputError("autoscaling needs both --min-replicas and --max-replicas")
            if lower < 0 or upper < 1 or lower > upper:
                raise InvalidInputError(
                    f"--min-replicas {lower} and --max-replicas {upper}: need 0 <= min <= max and max >= 1"
                )
            object.__setattr__(self, "replicas", None)
        elif self.replicas is None or self.replicas < 1:
            raise InvalidInputError(f"--replicas must be 1 or more, got {self.replicas!r}")
        for name in ("num_cpus", "num_gpus", "ingress_num_cpus"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise InvalidInputError(f"--{name.replace('_', '-')} must be 0 or more, got {value!r}")
        for name in ("max_models_per_replica", "max_ongoing_requests", "ingress_replicas"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)!r}")
        for name in ("call_timeout_s", "health_check_period_s", "report_interval_s", "target_ongoing_requests"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)!r}")
        limit = self.engine.max_loaded_models
        if limit is not None and limit != self.max_models_per_replica:
            raise InvalidInputError(
                f"--max-loaded-models {limit} and --max-models-per-replica {self.max_models_per_replica} must agree: "
                "a replica's engine holds as many models as Ray's multiplexer routes to it (give one of them)"
            )
        if not self.route_prefix.startswith("/"):
            raise InvalidInputError(f"--route-prefix must start with '/', got {self.route_prefix!r}")

    def replica_engine(self) -> EngineConfig:
        """The engine configuration of a model replica: its model limit, load wait and CPU threads filled in."""
        threads = self.engine.num_threads or max(1, math.ceil(self.num_cpus))
        return self.engine.replace(
            max_loaded_models=self.max_models_per_replica,
            load_wait_s=self.engine.load_wait_s or self.server.load_wait_s,
            num_threads=threads,
        )

    def model_options(self) -> dict[str, Any]:
        """The model deployment's Serve options (replicas or autoscaling, resources, health checks)."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": max(1.0, self.server.graceful_timeout_s),
        }
        if self.replicas is None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    def ingress_options(self) -> dict[str, Any]:
        """The ingress deployment's Serve options."""
        return {
            "num_replicas": self.ingress_replicas,
            "max_ongoing_requests": self.ingress_max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.ingress_num_cpus},
            "graceful_shutdown_timeout_s": max(1.0, self.server.graceful_timeout_s),
        }


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The Ray flags of ``sie-agents ray serve`` (the engine and server flags come from ``sie-agents serve``)."""
    group = parser.add_argument_group("ray")
    group.add_argument(
        "--address",
        help="Ray cluster to join ('auto': the one this machine belongs to, or ray://host:10001); "
        "default: start a local Ray instance for this process",
    )
    group.add_argument("--app-name", default="sie", help="Serve application name (default sie)")
    group.add_argument("--route-prefix", default="/", help="HTTP path the application is mounted at (default /)")
    group.add_argument("--replicas", type=int, default=None, help="fixed number of model replicas (default 1)")
    group.add_argument("--min-replicas", type=int, help="autoscaling: fewest model replicas (with --max-replicas)")
    group.add_argument("--max-replicas", type=int, help="autoscaling: most model replicas")
    group.add_argument(
        "--target-ongoing-requests",
        type=float,
        default=16.0,
        help="autoscaling: requests in flight per replica to aim for (default 16; the engine batches them)",
    )
    group.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per model replica (fractional; default 1)")
    group.add_argument(
        "--num-gpus", type=float, default=0.0, help="GPUs per model replica (fractional, e.g. 0.5; default 0)"
    )
    group.add_argument(
        "--max-models-per-replica",
        type=int,
        help="models one replica holds at once (Ray's multiplexing LRU and the engine's limit; "
        f"default --max-loaded-models, else {DEFAULT_MAX_MODELS_PER_REPLICA})",
    )
    group.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=32,
        help="requests one model replica takes at once; beyond it Ray spills a model's requests to another replica, "
        "which loads it too (default 32)",
    )
    group.add_argument("--ingress-replicas", type=int, default=1, help="HTTP ingress replicas (default 1)")
    group.add_argument("--ingress-num-cpus", type=float, default=0.5, help="CPUs per ingress replica (default 0.5)")
    group.add_argument(
        "--call-timeout", type=float, default=300.0, help="seconds the ingress waits for a replica (default 300)"
    )
    group.add_argument(
        "--health-check-period",
        type=float,
        default=10.0,
        help="seconds between Serve's health checks of a replica (default 10)",
    )
    group.add_argument(
        "--ray-num-cpus",
        type=float,
        help="CPUs of the local Ray instance (without --address; default: all of this machine's)",
    )
    group.add_argument(
        "--detach",
        action="store_true",
        help="with --address: deploy the application and exit, leaving it running on the cluster",
    )


def settings_from_args(args: argparse.Namespace) -> RaySettings:
    """RaySettings from the parsed flags of ``sie-agents ray serve`` (or a Serve config file's ``args``).

    Raises:
        InvalidInputError: A flag is out of range, or two flags disagree.
    """
    from sie_server.serve import build_settings, server_config

    server = build_settings(args)
    engine = server_config(args)
    if engine.load_wait_s is None:  # as `sie-agents serve`: no request waits for a model past --load-wait
        engine = engine.replace(load_wait_s=server.load_wait_s)
    per_replica = args.max_models_per_replica or engine.max_loaded_models or DEFAULT_MAX_MODELS_PER_REPLICA
    autoscaling = args.min_replicas is not None or args.max_replicas is not None
    if autoscaling and args.replicas is not None:
        raise InvalidInputError("give either --replicas or --min-replicas/--max-replicas, not both")
    return RaySettings(
        engine=engine,
        server=server,
        app_name=args.app_name,
        route_prefix=args.route_prefix,
        replicas=None if autoscaling else (args.replicas if args.replicas is not None else 1),
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        max_models_per_replica=per_replica,
        max_ongoing_requests=args.max_ongoing_requests,
        ingress_replicas=args.ingress_replicas,
        ingress_num_cpus=args.ingress_num_cpus,
        call_timeout_s=args.call_timeout,
        health_check_period_s=args.health_check_period,
        allowed_hosts=tuple(args.allowed_host or ()),
        keep_alive_timeout_s=args.keep_alive_timeout,
    )


def namespace_from_mapping(parser: argparse.ArgumentParser, values: Mapping[str, Any]) -> argparse.Namespace:
    """The parser's defaults with ``values`` applied (a Serve config file's ``args``), names checked.

    Keys are the flags' names with underscores (``max_models_per_replica``, ``auth_token``, ``config_file`` or
    ``config``, ``extra_models`` or ``model``: a list of ``TASK=ID[=PATH]``).

    Raises:
        InvalidInputError: A key names no flag.
    """
    namespace = parser.parse_args([])
    aliases = {"config": "config_file", "model": "extra_models", "models": "extra_models"}
    known = set(vars(namespace))
    for raw_key, value in values.items():
        key = aliases.get(raw_key, raw_key.replace("-", "_"))
        if key not in known:
            raise InvalidInputError(f"unknown option {raw_key!r}; allowed: {', '.join(sorted(known))}")
        if key in ("preload", "extra_models", "allowed_host") and isinstance(value, str):
            value = [value]
        setattr(namespace, key, value)
    return namespace
