"""The Service clients call: one per ModelService, over the pods of every served version."""

from __future__ import annotations

from conch.api import ModelService
from conch.builders.meta import Manifest, metadata, selector

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
PORTS = (("http", HTTP_PORT), ("grpc", GRPC_PORT), ("metrics", METRICS_PORT))


def build(svc: ModelService) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(svc, svc.metadata.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(svc),
            "ports": [
                {
                    "name": name,
                    "port": port,
                    "targetPort": name,
                    "protocol": "TCP",
                    "appProtocol": "grpc" if name == "grpc" else "http",
                }
                for name, port in PORTS
            ],
        },
    }


def endpoints(svc: ModelService) -> dict[str, str]:
    host = f"{svc.metadata.name}.{svc.metadata.namespace}.svc"
    return {
        "http": f"http://{host}:{HTTP_PORT}",
        "grpc": f"{host}:{GRPC_PORT}",
        "metrics": f"http://{host}:{METRICS_PORT}/metrics",
    }
