"""The Ray Serve application: an HTTP ingress, the model replicas, and the registry between them.

::

    client ──HTTP──> Serve proxy ──> SieIngress (sie_server's app, RayBackend) ──handle, multiplexed_model_id──>
                                         │                                          SieModel replicas (one Engine each)
                                         └──── SieRegistry <──── reports (models, loads, queue depth) ───┘

:func:`build_app` makes it from :class:`~sie_ray.settings.RaySettings`; :func:`build` is the builder a Serve
config file names (``import_path: sie_ray.app:build``, ``args:`` the flags of ``sie-agents ray serve`` with
underscores); ``serve run deploy/ray/serve.yaml`` and KubeRay's ``RayService`` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import Application

from sie_core import Engine
from sie_server.app import create_app
from sie_server.serve import mcp_mount

from .backend import RayBackendFactory
from .metrics import RayMetrics
from .registry import ReplicaRegistry
from .replica import HeldModel, ModelReplica, logs_to_stderr
from .settings import RaySettings, namespace_from_mapping, settings_from_args

__all__ = ["INGRESS", "MODEL", "REGISTRY", "SieIngress", "build", "build_app", "model_deployment"]

#: The deployments' names (a Serve config file's ``deployments:`` entries override their options by these).
INGRESS, MODEL, REGISTRY = "SieIngress", "SieModel", "SieRegistry"


def model_deployment(max_models_per_replica: int) -> type[ModelReplica]:
    """The model replica class with Ray's multiplexed loader holding at most ``max_models_per_replica`` models."""

    class SieModelReplica(ModelReplica):
        @serve.multiplexed(max_num_models_per_replica=max_models_per_replica)
        async def held(self, model_id: str) -> HeldModel:
            return await self.load_into_engine(model_id)

    return SieModelReplica


@serve.ingress()
class SieIngress:
    """The HTTP ingress: ``sie-agents serve``'s app over an engine whose backend calls the model replicas.

    Args:
        model: Handle of the model deployment.
        registry: Handle of the registry deployment.
        settings: The application's settings.
    """

    def __init__(self, model: Any, registry: Any, settings: RaySettings) -> None:
        logs_to_stderr()
        factory = RayBackendFactory(model, registry, settings)
        engine = Engine(settings.engine, backend_factory=factory)
        metrics = RayMetrics(factory.replicas)
        engine.add_listener(metrics)
        mcp = mcp_mount(engine, settings.server, list(settings.allowed_hosts))
        self._app = _OneRequestId(create_app(engine, settings.server, mcp=mcp, metrics=metrics, close_engine=True))

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


class _OneRequestId:
    """Drops the app's own ``X-Request-ID`` answer header: Serve's proxy adds the same id (it set it on the way in)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def without_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, without_id)


def build_app(settings: RaySettings) -> Application:
    """The Serve application for ``settings`` (run it with ``serve.run``)."""
    down_after = 3 * settings.report_interval_s + 2.0
    registry = serve.deployment(
        name=REGISTRY, num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0}
    )(ReplicaRegistry).bind(down_after_s=down_after)
    replica_class = model_deployment(settings.max_models_per_replica)
    model = serve.deployment(name=MODEL, **settings.model_options())(replica_class).bind(registry, settings)
    ingress = serve.deployment(name=INGRESS, **settings.ingress_options())(SieIngress)
    return ingress.bind(model, registry, settings)


def build(args: Mapping[str, Any] | None = None) -> Application:
    """The builder of a Serve config file: ``args`` are ``sie-agents ray serve``'s flags, with underscores.

    Example (``deploy/ray/serve.yaml``)::

        applications:
          - name: sie
            import_path: sie_ray.app:build
            args: {replicas: 2, num_cpus: 1, max_models_per_replica: 2, config: /models/models.toml}

    Raises:
        InvalidInputError: An unknown key, or a value the flag refuses.
    """
    from .cli import serve_parser

    return build_app(settings_from_args(namespace_from_mapping(serve_parser(), dict(args or {}))))
