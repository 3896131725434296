"""What differs between clusters: images, registry, namespaces, gateway, domain, identity.

One `PlatformSettings` drives everything the platform renders, so `platform render`, the
operator and the tests agree. It loads from defaults, then a YAML file, then
`AEROGRID_PLATFORM_*` environment variables (the operator's Deployment mounts the file
`platform render` wrote into its ConfigMap and points AEROGRID_PLATFORM_SETTINGS at it).

Defaults that name example.com are placeholders a real install must override;
`PlatformSettings.placeholders()` lists the ones still in use.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aerogrid import __version__
from aerogrid_cloud.model import check_name

__all__ = ["ENV_PREFIX", "SETTINGS_FILE_ENV", "PlatformSettings", "SettingsError"]

#: Every field can be set as AEROGRID_PLATFORM_<FIELD> (upper case).
ENV_PREFIX: Final = "AEROGRID_PLATFORM_"
#: A YAML file of settings, read before the single-field variables.
SETTINGS_FILE_ENV: Final = "AEROGRID_PLATFORM_SETTINGS"

_EXAMPLE: Final = "example.com"
_Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the field and the source."""


class PlatformSettings(BaseModel):
    """The cluster-specific choices behind every rendered object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- images ------------------------------------------------------------------------
    #: Repository of the runtime image; an App's runtimeVersion is the tag.
    runtime_image: str = "ghcr.io/aerogrid/aerogrid-runtime"
    #: The image of the operator and the catalog (the aerogrid-cloud distribution).
    platform_image: str = f"ghcr.io/aerogrid/aerogrid-platform:{__version__}"
    #: The builder of an app's image when requirements.txt lists packages: buildah (the
    #: build Job runs `buildah bud` and `buildah push`; see render/build.py).
    build_image: str = "quay.io/buildah/stable:v1.38.1"
    #: The package index the build installs requirements from (pip's --index-url); an
    #: http:// index is trusted as configured (pip's --trusted-host for its host).
    package_index: str = "https://pypi.org/simple"
    #: Repository the built images are pushed to (tag: hash of requirements + runtime).
    build_registry: str = "registry.aerogrid-system.svc.cluster.local:5000/aerogrid/apps"
    #: A kubernetes.io/dockerconfigjson Secret in the build namespace: the credentials
    #: buildah pulls the runtime image and pushes with (its REGISTRY_AUTH_FILE).
    build_push_secret: str = ""
    #: Pull the runtime image and push over plain HTTP (an in-cluster registry without TLS).
    build_registry_insecure: bool = False
    build_timeout_seconds: Annotated[int, Field(ge=1)] = 1800
    #: How long a finished build Job stays (its record of the built tag stays for good).
    build_ttl_seconds: Annotated[int, Field(ge=0)] = 86400
    #: Image pull secrets for the apps' pods (the built images' registry may be private).
    image_pull_secrets: list[str] = Field(default_factory=list)

    # -- namespaces ---------------------------------------------------------------------
    #: The operator, the catalog and their settings.
    system_namespace: str = "aerogrid-system"
    #: Image builds run here, apart from tenants (buildah unpacks images as root with a few
    #: capabilities: Pod Security baseline, see render/build.py).
    build_namespace: str = "aerogrid-builds"

    # -- Istio ---------------------------------------------------------------------------
    gateway_name: str = "aerogrid-gateway"
    #: Where the ingress gateway's pods run (the Gateway object lives there too).
    gateway_namespace: str = "istio-system"
    #: The ingress gateway pods' labels (the Gateway's selector, the NetworkPolicy's peer).
    gateway_selector: dict[str, str] = Field(default_factory=lambda: {"istio": "ingressgateway"})
    #: The gateway's service account: the only mTLS peer the tenants' apps accept.
    gateway_service_account: str = "istio-ingressgateway-service-account"
    #: A TLS Secret in the gateway namespace; empty: plain HTTP on port 80 (h2c and HTTP/1.1).
    gateway_tls_secret: str = ""
    #: Istio's root namespace: mesh-wide policies (PeerAuthentication STRICT) go there.
    mesh_root_namespace: str = "istio-system"
    #: Where istiod runs: sidecars must reach it (xDS on 15012) through the NetworkPolicy.
    istiod_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    #: Label tenant namespaces for sidecar injection (needs istio-cni under `restricted`).
    istio_injection: bool = True

    # -- endpoint and identity -----------------------------------------------------------
    #: Apps are reached at <app>.<tenant>.<domain>, or any host with x-aerogrid-* headers.
    domain: str = "aerogrid.example.com"
    oidc_issuer: str = "https://login.example.com/"
    oidc_audience: str = "aerogrid"
    oidc_jwks_uri: str = "https://login.example.com/.well-known/jwks.json"
    #: The JWT claim holding the caller's identity-provider groups.
    oidc_groups_claim: str = "groups"

    # -- egress ---------------------------------------------------------------------------
    #: Ports of the company's Kafka brokers: the only egress besides DNS (and istiod).
    kafka_ports: Annotated[list[_Port], Field(min_length=1)] = Field(
        default_factory=lambda: [9092, 9093]
    )
    #: Where the brokers are; empty: any address, on the Kafka ports only.
    kafka_cidrs: list[str] = Field(default_factory=list)
    #: Where the identity provider is, so apps can fetch its JWKS (HTTPS); empty: no rule,
    #: and apps then check tokens only if their JWKS is reachable another way.
    idp_cidrs: list[str] = Field(default_factory=list)

    # -- sizes and timing ----------------------------------------------------------------
    #: The most one container of a tenant may ask for (a LimitRange's max).
    container_max_cpu: str = "2"
    container_max_memory: str = "4Gi"
    #: Seconds between level-based re-checks of every App and Tenant by the operator.
    resync_seconds: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("system_namespace", "build_namespace", "gateway_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_name("namespace", value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        labels = value.split(".")
        if not all(labels):
            raise ValueError(f"domain {value!r} has an empty label")
        for label in labels:
            check_name("domain label", label)
        return value

    @field_validator("kafka_cidrs", "idp_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("oidc_issuer", "oidc_jwks_uri", "package_index")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} must be an http(s) URL")
        return value

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls, path: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> PlatformSettings:
        """Defaults, then the YAML file (`path`, else $AEROGRID_PLATFORM_SETTINGS), then env."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        file = path if path is not None else env.get(SETTINGS_FILE_ENV) or None
        if file is not None:
            values.update(_read_file(Path(file)))
        values.update(_from_env(env))
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, file)) from None

    def to_yaml(self) -> str:
        """The settings as the file `load` reads (what the operator's ConfigMap holds)."""
        return yaml.safe_dump(self.model_dump(), sort_keys=True)

    def placeholders(self) -> list[str]:
        """Fields still at an example.com default: a real install must set them."""
        return [
            name
            for name, value in self.model_dump().items()
            if isinstance(value, str) and _EXAMPLE in value
        ]

    # -- derived -------------------------------------------------------------------------

    @property
    def gateway_ref(self) -> str:
        """How a VirtualService names the shared Gateway."""
        return f"{self.gateway_namespace}/{self.gateway_name}"

    @property
    def gateway_principal(self) -> str:
        """The ingress gateway's mTLS identity (SPIFFE, as AuthorizationPolicies spell it)."""
        return f"{self.trust_domain}/ns/{self.gateway_namespace}/sa/{self.gateway_service_account}"

    @property
    def endpoint_port(self) -> int:
        return 443 if self.gateway_tls_secret else 80

    def app_host(self, app: str, tenant: str) -> str:
        return f"{app}.{tenant}.{self.domain}"

    def runtime_image_for(self, runtime_version: str) -> str:
        return f"{self.runtime_image}:{runtime_version}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read platform settings {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"platform settings {path} are not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"platform settings {path} must be a mapping of setting: value")
    return {str(key): value for key, value in data.items()}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """AEROGRID_PLATFORM_<FIELD> variables, lists comma-separated, maps as k=v,k=v."""
    values: dict[str, Any] = {}
    for name, info in PlatformSettings.model_fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        raw = raw.strip()
        annotation = str(info.annotation)
        if annotation.startswith("dict"):
            pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be key=value,key=value")
            values[name] = {k.strip(): v.strip() for k, v in pairs}
        elif annotation.startswith("list"):
            values[name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            values[name] = raw
    return values


def _explain(exc: ValidationError, file: object) -> str:
    source = f" (file {file} and {ENV_PREFIX}* variables)" if file else ""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
        for error in exc.errors()
    )
    return f"invalid platform settings{source}: {problems}"
