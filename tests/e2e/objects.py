"""Kubernetes objects for the e2e tests (plain dicts, as `kubectl apply -f` takes them)."""

from __future__ import annotations

import base64
from typing import Any

CONTROLLER = "pysozu.io/ingress-controller"


def ingress_class(name: str = "pysozu", controller: str = CONTROLLER) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


def service(name: str, port: int = 80, port_name: str = "http") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": port_name, "port": port, "protocol": "TCP", "targetPort": port_name}
            ],
        },
    }


def endpoint_slice(
    service_name: str, ips: list[str], port: int, port_name: str = "http", ready: bool = True
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "default",
            "name": f"{service_name}-slice",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": f"{service_name}-{i}"},
            }
            for i, ip in enumerate(ips)
        ],
    }


def ingress(
    name: str,
    host: str,
    service_name: str,
    path: str = "/",
    path_type: str = "Prefix",
    created: str | None = None,
    tls_secret: str | None = None,
    annotations: dict[str, str] | None = None,
    extra_paths: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "default", "name": name}
    if created:
        metadata["creationTimestamp"] = created
    if annotations:
        metadata["annotations"] = annotations
    paths = [(path, service_name), *extra_paths]
    spec: dict[str, Any] = {
        "ingressClassName": "pysozu",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": p,
                            "pathType": path_type,
                            "backend": {"service": {"name": s, "port": {"name": "http"}}},
                        }
                        for p, s in paths
                    ]
                },
            }
        ],
    }
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def tls_secret(name: str, certificate_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"namespace": "default", "name": name},
        "data": {
            "tls.crt": base64.b64encode(certificate_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
