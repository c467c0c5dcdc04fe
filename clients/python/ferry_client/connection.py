"""A channel to a coordinator over mutual TLS, and one stub per service.

gRPC checks the server certificate's chain and host name; `connect` also
checks, with one TLS handshake of its own first, that the server is a
*coordinator* of the cluster (its SPIFFE id `spiffe://TRUST_DOMAIN/coordinator/ID`),
not merely a holder of some certificate the cluster's CA issued, such as
an agent's."""

import socket
import ssl
from dataclasses import dataclass
from typing import Optional

import grpc

from ferry.v1 import (
    access_pb2_grpc,
    agents_pb2_grpc,
    approvals_pb2_grpc,
    artifacts_pb2_grpc,
    cluster_pb2_grpc,
    deployments_pb2_grpc,
    environments_pb2_grpc,
    executions_pb2_grpc,
    notifications_pb2_grpc,
    pipelines_pb2_grpc,
    secrets_pb2_grpc,
)

COORDINATOR_PATH = "/coordinator/"


@dataclass
class Client:
    """One stub per public service, over one channel."""

    channel: grpc.Channel
    pipelines: pipelines_pb2_grpc.PipelinesStub
    executions: executions_pb2_grpc.ExecutionsStub
    approvals: approvals_pb2_grpc.ApprovalsStub
    agents: agents_pb2_grpc.AgentsStub
    environments: environments_pb2_grpc.EnvironmentsStub
    deployments: deployments_pb2_grpc.DeploymentsStub
    artifacts: artifacts_pb2_grpc.ArtifactsStub
    secrets: secrets_pb2_grpc.SecretsStub
    notifications: notifications_pb2_grpc.NotificationsStub
    access: access_pb2_grpc.AccessStub
    cluster: cluster_pb2_grpc.ClusterStub

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def check_coordinator(address: str, ca: str, cert: str, key: str,
                      trust_domain: Optional[str] = None, timeout: float = 10.0) -> str:
    """Connects once with TLS and returns the server's SPIFFE id, after
    checking it names a coordinator (of `trust_domain`, when given).
    Raises `ssl.SSLError` or `ValueError`."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            peer = tls.getpeercert() or {}
    uris = [v for (k, v) in peer.get("subjectAltName", ()) if k == "URI"]
    for uri in uris:
        if not uri.startswith("spiffe://"):
            continue
        domain, sep, rest = uri[len("spiffe://"):].partition("/")
        if sep and ("/" + rest).startswith(COORDINATOR_PATH):
            if trust_domain is not None and domain != trust_domain:
                raise ValueError(f"{address} is a coordinator of trust domain {domain!r}, not {trust_domain!r}")
            return uri
    raise ValueError(f"{address} is not a Ferry coordinator (its certificate names {uris or 'no SPIFFE id'})")


def connect(address: str, ca: str, cert: str, key: str,
            trust_domain: Optional[str] = None, check_identity: bool = True,
            options: Optional[list] = None) -> Client:
    """A client of the coordinator at `address` (`HOST:PORT`), with the
    operator (or job worker) certificate `cert`/`key` and the cluster's CA."""
    if check_identity:
        check_coordinator(address, ca, cert, key, trust_domain)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert))
    channel = grpc.secure_channel(address, credentials, options=options or [])
    return Client(
        channel=channel,
        pipelines=pipelines_pb2_grpc.PipelinesStub(channel),
        executions=executions_pb2_grpc.ExecutionsStub(channel),
        approvals=approvals_pb2_grpc.ApprovalsStub(channel),
        agents=agents_pb2_grpc.AgentsStub(channel),
        environments=environments_pb2_grpc.EnvironmentsStub(channel),
        deployments=deployments_pb2_grpc.DeploymentsStub(channel),
        artifacts=artifacts_pb2_grpc.ArtifactsStub(channel),
        secrets=secrets_pb2_grpc.SecretsStub(channel),
        notifications=notifications_pb2_grpc.NotificationsStub(channel),
        access=access_pb2_grpc.AccessStub(channel),
        cluster=cluster_pb2_grpc.ClusterStub(channel),
    )
