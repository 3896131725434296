"""What the platform needs to run for real on the test bed's node (support.k8s_node).

* `push_platform_images`: the built images (support.images) copied into the node's registry,
  and the `PlatformSettings` whose image references are those copies;
* `NodeKafka`: Apache Kafka with a second listener on the node's IP, advertised there, so pods
  (which cannot reach the host's loopback) consume and produce; the test talks to 127.0.0.1;
* `TestIdentity`: the identity provider the cloud tests stand in for (an RSA key, JWTs minted
  as tests/cloud/test_catalog.py mints them) with its JWKS served over HTTP on the node's IP,
  where the apps' and the catalog's pods fetch it (AEROGRID_OIDC_JWKS_URL).

Everything listens on loopback or on the node's bridge address, nowhere else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from aerogrid_cloud.settings import PlatformSettings
from support.brokers import ApacheKafka, free_port
from support.http_thread import HttpThread, QuietLog
from support.images import BUILDER, PLATFORM, RUNTIME, built_images
from support.k8s_node import KubeNode

ISSUER: Final = "https://idp.aerogrid.test/"
AUDIENCE: Final = "aerogrid"
DOMAIN: Final = "apps.aerogrid.test"
_KEY_ID: Final = "k1"


@dataclass(frozen=True)
class NodeImages:
    """The references pods pull, in the node's registry."""

    platform: str
    #: The runtime's repository (an App's runtimeVersion is the tag) and that tag.
    runtime_repository: str
    runtime_tag: str
    builder: str


def push_platform_images(node: KubeNode) -> NodeImages:
    """Copy the runtime, platform and builder images into the node's registry."""
    images = built_images()
    refs = {
        name: node.push(images[name].archive, f"aerogrid/{name}:{images[name].tag}")
        for name in (RUNTIME, PLATFORM, BUILDER)
    }
    repository, tag = refs[RUNTIME].rsplit(":", 1)
    return NodeImages(refs[PLATFORM], repository, tag, refs[BUILDER])


def node_settings(
    node: KubeNode,
    images: NodeImages,
    identity: TestIdentity,
    kafka_port: int,
    *,
    package_index: str | None = None,
) -> PlatformSettings:
    """The platform's settings for the node: its registry, the test IdP, no Istio data plane,
    and the package index builds install from (a `support.package_index` one on the node)."""
    extra: dict[str, Any] = {} if package_index is None else {"package_index": package_index}
    return PlatformSettings(
        **extra,
        platform_image=images.platform,
        runtime_image=images.runtime_repository,
        build_image=images.builder,
        build_registry=f"{node.registry}/aerogrid/apps",
        build_registry_insecure=True,
        domain=DOMAIN,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_uri=identity.jwks_url,
        kafka_ports=[kafka_port],
        # No istiod here: nothing would inject sidecars (the Istio objects are still applied).
        istio_injection=False,
        resync_seconds=2.0,
    )


class NodeKafka(ApacheKafka):
    """Apache Kafka whose listener ``PODS`` is on the node's IP (advertised there).

    `bootstrap` stays ``127.0.0.1:PORT`` for the test; `pod_bootstrap` is what pods use.
    """

    def __init__(self, node_ip: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_ip = node_ip
        self.pod_port: int | None = None

    @property
    def pod_bootstrap(self) -> str:
        if self.pod_port is None:
            raise RuntimeError("kafka broker is not started")
        return f"{self.node_ip}:{self.pod_port}"

    def server_properties(self) -> dict[str, str]:
        config = super().server_properties()
        pods = f"PODS://{self.pod_bootstrap}"
        config["listeners"] += f",{pods}"
        config["advertised.listeners"] += f",{pods}"
        config["listener.security.protocol.map"] += ",PODS:PLAINTEXT"
        return config

    def _launch(self) -> Any:
        self.pod_port = free_port()
        return super()._launch()


class TestIdentity:
    """An OIDC stand-in: RS256 tokens signed by a fresh key, its JWKS on ``http://IP:PORT``."""

    __test__ = False  # not a pytest test class

    def __init__(self, host: str) -> None:
        self.host = host
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**public, "kid": _KEY_ID, "alg": "RS256", "use": "sig"}]})
        self.fetches = 0
        identity = self

        class _Jwks(QuietLog):
            def do_GET(self) -> None:
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                identity.fetches += 1
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = HttpThread(host, _Jwks, "test-identity")

    @property
    def jwks_url(self) -> str:
        return f"{self._http.base_url}/jwks.json"

    def token(self, groups: list[str], subject: str = "bea", lifetime: float = 3600) -> str:
        """A JWT the platform accepts for a member of `groups`."""
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now}
        claims |= {"exp": now + int(lifetime), "groups": groups}
        return jwt.encode(claims, self._key, "RS256", headers={"kid": _KEY_ID})

    def __enter__(self) -> Self:
        self._http.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.stop()
