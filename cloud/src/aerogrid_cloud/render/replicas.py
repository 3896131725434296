"""How an App's replicas are run, disrupted and reached: rollout, disruption budget, balancing.

Every replica of an app restores and serves its grids (one is the active processor, the
others standbys: see the runtime's replica set), so the cluster may run several and take
them away one at a time:

* the Deployment rolls one pod at a time and never below the wanted count
  (`maxUnavailable: 0`, `maxSurge: 1`): the new pod must pass its readiness probe (its
  own restore) before an old one gets SIGTERM, so the last ready replica is never the
  one taken away;
* a PodDisruptionBudget lets a drain evict at most one replica at a time;
* a DestinationRule spreads the clients' streams over the ready replicas (see
  `destination_rule` for how connections are balanced).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aerogrid.server.connections import HEADER_TIMEOUT
from aerogrid_cloud.render.common import Owner, api_object, object_meta

__all__ = [
    "REPLICA_ID_ENV",
    "TERMINATION_GRACE_SECONDS",
    "UPSTREAM_IDLE_SECONDS",
    "destination_rule",
    "pod_disruption_budget",
    "replica_id_env",
    "rolling_update",
]

#: The runtime's replica id (the pod's name, so logs, `/replica` and metrics name the pod).
REPLICA_ID_ENV: Final = "AEROGRID_REPLICA_ID"
#: `aerogrid run` exits within 10 s of SIGTERM (batch in flight, then its clients); the
#: rest is room for the sidecar's drain and a slow node before the kubelet sends SIGKILL.
TERMINATION_GRACE_SECONDS: Final = 20
#: The proxies close an idle upstream connection before the runtime's HTTP port closes it
#: (after HEADER_TIMEOUT with no stream open), so no request is sent on a closing one.
UPSTREAM_IDLE_SECONDS: Final = int(HEADER_TIMEOUT // 2)


def rolling_update() -> dict[str, Any]:
    """One new pod at a time, and no old one stopped before its successor is ready."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def replica_id_env() -> dict[str, Any]:
    """The replica's id from the downward API: its pod's name."""
    return {
        "name": REPLICA_ID_ENV,
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    }


def pod_disruption_budget(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner: Owner | None,
) -> dict[str, Any]:
    """At most one of the app's replicas evicted at a time (a drain, a node upgrade).

    A replica that is not ready (still restoring, or failing) may be evicted whatever the
    budget says (`AlwaysAllow`): it serves no one, and keeping it would only block a drain.
    """
    return api_object(
        "policy/v1",
        "PodDisruptionBudget",
        object_meta(name, labels, namespace, owner),
        spec={
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(selector)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )


def destination_rule(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: Owner | None,
) -> dict[str, Any]:
    """How the gateway spreads an app's clients over its replicas.

    How connections are balanced: Envoy (the ingress gateway and the sidecars) balances
    HTTP per request, not per connection. A gRPC call, and so each Subscribe stream, is
    one HTTP/2 stream, that is one request: the streams a client multiplexes on its one
    connection to the gateway are each sent to a replica of their own, over HTTP/2
    connections the gateway keeps to every replica (the `grpc` port is HTTP/2 by its
    appProtocol; `h2UpgradePolicy: UPGRADE` does the same for the `http` port, which
    speaks HTTP/2 with prior knowledge too, so Connect and gRPC-Web streams that arrive
    over HTTP/1.1 share a few connections per replica instead of one each).
    `LEAST_REQUEST` sends each new stream to the replica with fewer streams open (of two
    picked at random): subscriptions last for hours, so counting what is open spreads
    them better than taking turns (a replica back from a restart gets the new streams
    until it has its share). A stream stays on its replica until it ends; when that
    replica goes, the client resumes on another from its last (epoch, seq).

    No `tls`: Istio's automatic mTLS keeps the mesh's STRICT mTLS to the replicas.
    """
    return api_object(
        "networking.istio.io/v1",
        "DestinationRule",
        object_meta(name, labels, namespace, owner),
        spec={
            "host": f"{name}.{namespace}.svc.cluster.local",
            "trafficPolicy": {
                "loadBalancer": {"simple": "LEAST_REQUEST"},
                "connectionPool": {
                    "http": {
                        "h2UpgradePolicy": "UPGRADE",
                        "idleTimeout": f"{UPSTREAM_IDLE_SECONDS}s",
                    }
                },
            },
        },
    )
