"""sie_ray: sie-agents on Ray Serve — many replicas, the model id as the routing key, one endpoint.

``sie-agents ray serve`` (or ``serve run deploy/ray/serve.yaml``, or KubeRay's ``RayService``) runs the HTTP API of
``sie-agents serve`` — SIE's wire routes, OpenAI ``/v1/embeddings``, ``/v1/rerank``, ``/v1/models``, health,
metrics, MCP at ``/mcp`` — on a Serve application of three deployments:

* ``SieIngress``: the server's own app (:func:`sie_server.create_app`) over an :class:`~sie_core.Engine` whose
  backend (:class:`~sie_ray.backend.RayBackend`) sends each call to the model deployment with
  ``multiplexed_model_id`` = the model's id, Ray Serve's routing key;
* ``SieModel``: replicas that each hold one engine; Ray's ``@serve.multiplexed`` loader loads a model into it on
  demand, with as many models per replica as the engine's ``max_loaded_models`` (:mod:`sie_ray.replica`);
* ``SieRegistry``: where replicas report their models, loads, evictions and queue depth (:mod:`sie_ray.registry`),
  for ``/v1/models``, the status page and ``/metrics``.

Every answer says which replica served it (``X-SIE-Worker``). Clients are unchanged: SIE's ``SIEClient``, the
openai client, ``Engine(base_url=...)``, ``sie-agents mcp --base-url`` and ``sie_langchain`` with ``base_url=``.

This package is the only one that imports ray, and only in the modules that need it (:mod:`sie_ray.app`,
:mod:`sie_ray.backend`, :mod:`sie_ray.replica`); importing ``sie_ray`` itself imports none of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RaySettings", "build", "build_app"]

_LAZY = {"RaySettings": "settings", "build": "app", "build_app": "app"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sie_ray' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
