"""The platform's way to the API server: lightkube's `AsyncClient`, and what it leaves to us.

lightkube does the requests: server-side apply with a field manager and force, merge
patches, get/list/delete, watches (re-requested when the server ends one), and errors as
`ApiError` carrying the API server's Status. What stays here is what it leaves to its user:

* choosing credentials: the kubeconfig files (`--kubeconfig`, $KUBECONFIG merged as kubectl
  merges them, ~/.kube/config) and a context, or the pod's service account, with one
  sentence naming the file or the known contexts when that fails;
* one line for each way a request fails, as the few `KubeError` kinds the CLIs and the
  operator tell apart (RBAC refusing a verb, the CRDs not installed, a watch expired, ...);
* `ResourceType`, where a kind lives (the table render keeps), and its lightkube class:
  lightkube-models' typed class for Kubernetes' own kinds, a generic resource for the
  platform's CRDs and Istio's. Objects go in and come out as plain dicts, which is what
  render builds and the operator reads.

    async with connect(context="prod") as kube:
        applied = await kube.apply(APPS, app_object, field_manager=PROMOTE_MANAGER)
        async for event in kube.watch(APPS, "aerogrid-acme", resource_version=...):
            ...
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx2
import yaml
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube import ConfigError as LightkubeConfigError
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import NotReadyError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import CascadeType, PatchType

from aerogrid_cloud.model import APP_KIND, APP_PLURAL, GROUP, TENANT_KIND, TENANT_PLURAL, VERSION

__all__ = [
    "APPS",
    "PROMOTE_MANAGER",
    "SCALE_MANAGER",
    "STATE_MANAGER",
    "TENANTS",
    "ConfigError",
    "Conflict",
    "CrdMissing",
    "Forbidden",
    "Gone",
    "Invalid",
    "Kube",
    "KubeError",
    "NotFound",
    "ObjectList",
    "ResourceType",
    "Unreachable",
    "WatchEvent",
    "connect",
    "in_cluster",
]

#: The field manager promote applies an App's code and settings under.
PROMOTE_MANAGER: Final = "aerogrid-promote"
#: The field manager `stop`/`start` apply `spec.stopped` under. A separate manager, because
#: server-side apply removes the fields a manager owned and leaves out of its next apply:
#: `stop` applying only `stopped` as aerogrid-promote would drop the app's files.
STATE_MANAGER: Final = "aerogrid-start-stop"
#: The field manager `scale` applies `spec.replicas` under (its own, for the same reason:
#: and so that `stop`, `start` and promote never put the count back to its default).
SCALE_MANAGER: Final = "aerogrid-scale"

#: Seconds to connect and to wait for an answer to an ordinary request.
DEFAULT_TIMEOUT: Final = 30.0


# -- errors -------------------------------------------------------------------------------


class KubeError(Exception):
    """A request to the cluster failed; `str()` is one line meant for a person."""


class ConfigError(KubeError):
    """No kubeconfig, an unreadable one, or an unknown context."""


class Unreachable(KubeError):
    """The API server did not answer (connection refused, DNS, TLS, timeout)."""


class Forbidden(KubeError):
    """RBAC refused the request (401 or 403)."""


class NotFound(KubeError):
    """The object (or its namespace) does not exist."""


class CrdMissing(KubeError):
    """The API server does not serve the resource: the platform is not installed."""


class Invalid(KubeError):
    """The API server refused the object (the CRD's schema, admission)."""


class Conflict(KubeError):
    """Another field manager owns a field this apply sets, or the object changed."""


class Gone(KubeError):
    """A watch's resourceVersion is too old (410): list again, then watch from there."""


# -- resource types ----------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API: enough to find its lightkube class and explain refusals."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`apps.aerogrid.io`: how kubectl and RBAC rules name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def resource(self) -> Any:
        """lightkube's class for this kind (typed for Kubernetes' own, generic for CRDs).

        `Any`: lightkube's overloads pick their types from the class, which a table of
        kinds cannot name statically.
        """
        return _resource_class(self)


def _is_builtin(group: str) -> bool:
    """Kubernetes' own API groups: the core group, `apps`, `batch`, `*.k8s.io`."""
    return not group or "." not in group or group.endswith(".k8s.io")


@functools.cache
def _resource_class(rtype: ResourceType) -> Any:
    if _is_builtin(rtype.group):
        return resource_registry.load(rtype.api_version, rtype.kind)
    create = create_namespaced_resource if rtype.namespaced else create_global_resource
    return create(rtype.group, rtype.version, rtype.kind, rtype.plural)


APPS: Final = ResourceType(GROUP, VERSION, APP_PLURAL, APP_KIND)
TENANTS: Final = ResourceType(GROUP, VERSION, TENANT_PLURAL, TENANT_KIND, namespaced=False)


def _plain(obj: Any) -> dict[str, Any]:
    """An object lightkube decoded (a typed struct or a generic dict) as a plain dict."""
    data = obj.to_dict()
    assert isinstance(data, dict)
    return data


# -- connecting --------------------------------------------------------------------------


def _kubeconfig_files(kubeconfig: str | os.PathLike[str] | None) -> list[Path]:
    """The kubeconfig files to read: the argument, else $KUBECONFIG, else ~/.kube/config."""
    raw = os.fspath(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG", "")
    if not raw:
        raw = "~/.kube/config"
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part]


def _merged(files: list[Path]) -> dict[str, Any]:
    """kubectl's merge: the first file naming a cluster, user, context or current one wins."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    for file in files:
        loaded = yaml.safe_load(file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file} is not a kubeconfig (a YAML mapping)")
        for section in ("clusters", "users", "contexts"):
            known = {entry.get("name") for entry in merged[section]}
            for entry in loaded.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") not in known:
                    merged[section].append(entry)
        if not merged.get("current-context") and loaded.get("current-context"):
            merged["current-context"] = loaded["current-context"]
    return merged


def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Kube:
    """A client for `context` of a kubeconfig (default: $KUBECONFIG, then ~/.kube/config).

    Raises `ConfigError` naming the file or the known contexts; nothing is sent yet.
    """
    files = _kubeconfig_files(kubeconfig)
    existing = [f for f in files if f.is_file()]
    if not existing:
        where = ", ".join(str(f) for f in files)
        raise ConfigError(
            f"no kubeconfig at {where}: pass --kubeconfig or set KUBECONFIG "
            "(the cluster admin gives you one)"
        )
    config_file = os.pathsep.join(str(f) for f in existing)
    try:
        merged = _merged(existing)
        config = KubeConfig.from_dict(merged, fname=existing[0])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {config_file}: {_one_line(exc)}") from None
    names = list(config.contexts)
    if context is not None and context not in names:
        raise ConfigError(
            f"no context {context!r} in {config_file} (contexts: {', '.join(names) or 'none'})"
        )
    chosen = context or config.current_context
    if not chosen:
        raise ConfigError(
            f"{config_file} has no current context: pass --context "
            f"(contexts: {', '.join(names) or 'none'})"
        )
    try:
        single = config.get(chosen)
        assert single is not None
        return Kube(_client(single, timeout), context=chosen)
    except (LightkubeConfigError, OSError, ValueError, KeyError, AssertionError) as exc:
        raise ConfigError(
            f"kubeconfig {config_file}, context {chosen!r}: {_one_line(exc)}"
        ) from None


def in_cluster(*, timeout: float = DEFAULT_TIMEOUT) -> Kube:
    """A client with the pod's service-account token (the operator's and catalog's pods)."""
    try:
        single = KubeConfig.from_service_account().get()
        assert single is not None
    except (LightkubeConfigError, KeyError, OSError, AssertionError) as exc:
        raise ConfigError(f"not in a cluster: {_one_line(exc)}") from None
    return Kube(_client(single, timeout), context="in-cluster")


def _client(config: SingleConfig, timeout: float) -> AsyncClient:
    return AsyncClient(config, timeout=httpx2.Timeout(timeout))


# -- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectList:
    """A list's objects and the resourceVersion to watch from."""

    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """ADDED, MODIFIED or DELETED, with the object."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


@dataclass(frozen=True)
class _Failure:
    """What the API server said about a refused request (its Status object)."""

    status: int
    reason: str
    message: str
    details_kind: str
    details_name: str


class Kube:
    """One API server through lightkube's `AsyncClient`: dicts in and out, `KubeError`s.

    One per process (kopf's handlers, the catalog's watch and its requests share it); it
    belongs to the event loop that first uses it.
    """

    def __init__(self, client: AsyncClient, *, context: str) -> None:
        self.client = client
        self.context = context

    @property
    def config(self) -> SingleConfig:
        """The kubeconfig entry (server, credentials) this client was made from."""
        return self.client.config

    @property
    def host(self) -> str:
        return str(self.config.cluster.server)

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests --

    async def apply(
        self,
        rtype: ResourceType,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply: the fields in `obj` become `field_manager`'s, as given.

        `force` takes over fields another manager set (a promote's files win over an
        edit made with kubectl); fields this manager set before and left out now are removed.
        """
        metadata = obj.get("metadata", {})
        name, namespace = str(metadata.get("name", "")), metadata.get("namespace")
        if not name:
            raise ValueError("the object has no metadata.name")
        with self._errors("apply", rtype, namespace):
            applied = await self.client.patch(
                rtype.resource,
                name,
                dict(obj),
                namespace=namespace,
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=force,
                dry_run=dry_run,
            )
        return _plain(applied)

    async def get(
        self, rtype: ResourceType, name: str, namespace: str | None = None
    ) -> dict[str, Any]:
        with self._errors("get", rtype, namespace):
            return _plain(await self.client.get(rtype.resource, name, namespace=namespace))

    async def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> ObjectList:
        """Every object (of a namespace, or of all of them)."""
        with self._errors("list", rtype, namespace):
            found = self.client.list(
                rtype.resource,
                namespace=self._scope(rtype, namespace),
                labels=dict(labels) if labels else None,
            )
            items = [_plain(item) async for item in found]
            try:
                version = found.resourceVersion
            except NotReadyError:  # the server's answer carried no list version
                version = ""
        return ObjectList(items, version)

    async def create(
        self, rtype: ResourceType, obj: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create `obj` (in the namespace its metadata names); `dry_run` asks admission only."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        with self._errors("create", rtype, namespace):
            created = await self.client.create(rtype.resource.from_dict(dict(obj)), dry_run=dry_run)
        return _plain(created)

    async def merge_patch(
        self,
        rtype: ResourceType,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        status: bool = False,
        action: str = "patch",
    ) -> dict[str, Any]:
        """A JSON merge patch of the object, or (`status`) of its status subresource."""
        resource = rtype.resource.Status if status else rtype.resource
        with self._errors(action, rtype, namespace):
            patched = await self.client.patch(
                resource, name, dict(patch), namespace=namespace, patch_type=PatchType.MERGE
            )
        return _plain(patched)

    async def delete(self, rtype: ResourceType, name: str, namespace: str | None = None) -> None:
        """Delete, letting the garbage collector take what the object owns (background)."""
        with self._errors("delete", rtype, namespace):
            await self.client.delete(
                rtype.resource, name, namespace=namespace, cascade=CascadeType.BACKGROUND
            )

    async def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str,
        name: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version`, for as long as the caller iterates.

        lightkube asks again each time the server ends the watch (after `timeout_seconds`);
        raises `Gone` when the version is too old (list again).
        """
        with self._errors("watch", rtype, namespace, watching=True):
            events = self.client.watch(
                rtype.resource,
                namespace=self._scope(rtype, namespace),
                fields={"metadata.name": name} if name is not None else None,
                server_timeout=timeout_seconds,
                resource_version=resource_version,
            )
            async for kind, obj in events:
                yield WatchEvent(kind, _plain(obj))

    @staticmethod
    def _scope(rtype: ResourceType, namespace: str | None) -> str | None:
        """lightkube's namespace argument: "*" is every namespace (None is its default one)."""
        if namespace is None and rtype.namespaced:
            return str(ALL_NS)
        return namespace

    # -- errors --

    @contextmanager
    def _errors(
        self,
        action: str,
        rtype: ResourceType | None,
        namespace: str | None,
        *,
        watching: bool = False,
    ) -> Iterator[None]:
        """lightkube's and httpx's exceptions as the one-line `KubeError` kinds."""
        try:
            yield
        except ApiError as exc:
            raise self.error_for(_failure(exc), action, rtype, namespace) from None
        except httpx2.HTTPStatusError as exc:  # a watch refused at its start, a non-JSON answer
            response = exc.response
            failure = _Failure(response.status_code, response.reason_phrase, "", "", "")
            raise self.error_for(failure, action, rtype, namespace) from None
        except httpx2.TransportError as exc:
            if watching and not isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
                raise Unreachable(
                    f"watch on {self.host} broke off: {_network_reason(exc)}"
                ) from None
            raise Unreachable(
                f"cannot reach the cluster at {self.host} (context {self.context}): "
                f"{_network_reason(exc)}"
            ) from None

    def error_for(
        self,
        failure: _Failure,
        action: str,
        resource: ResourceType | None,
        namespace: str | None,
    ) -> KubeError:
        what = resource.qualified if resource is not None else "the resource"
        where = f" in namespace {namespace}" if namespace else ""
        status, message = failure.status, failure.message
        if status == 401:
            return Forbidden(
                f"unauthorized: the cluster at {self.host} does not accept this kubeconfig's "
                f"credentials (context {self.context}): {message}"
            )
        if status == 403:
            return Forbidden(f"forbidden: cannot {action} {what}{where}: {message}")
        if status == 404:
            kind = failure.details_kind
            if kind == "namespaces" and namespace:
                return NotFound(f"namespace {namespace} does not exist: {message}")
            if resource is not None and not failure.details_name and kind != "namespaces":
                # The collection itself is unknown: nobody registered the CRD.
                return CrdMissing(
                    f"the cluster at {self.host} does not serve {what} "
                    f"({resource.api_version}): the AeroGrid platform is not installed there "
                    "(run aerogrid platform install)"
                )
            return NotFound(message or f"{what} not found{where}")
        if status == 409:
            return Conflict(f"conflict: cannot {action} {what}{where}: {message}")
        if status == 410 or failure.reason == "Expired":
            return Gone(message or "resource version too old")
        if status in (400, 422):
            return Invalid(
                f"the cluster refused the {resource.kind if resource else 'object'}: {message}"
            )
        return KubeError(
            f"cannot {action} {what}{where}: HTTP {status} {failure.reason}: {message}"
        )


def _failure(exc: ApiError) -> _Failure:
    status = exc.status
    details = status.details
    return _Failure(
        status=int(status.code or (exc.response.status_code if exc.response else 500)),
        reason=str(status.reason or ""),
        message=str(status.message or ""),
        details_kind=str(details.kind or "") if details is not None else "",
        details_name=str(details.name or "") if details is not None else "",
    )


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _network_reason(exc: BaseException) -> str:
    """The root cause of a connection failure, in a few words."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for found in chain:
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, socket.gaierror):
            return f"unknown host ({found.strerror})"
        if isinstance(found, ssl.SSLError):
            return f"TLS: {_one_line(found)}"
    text = " ".join(_one_line(c) for c in chain)
    if "Connection refused" in text:
        return "connection refused"
    if any(isinstance(c, TimeoutError | httpx2.TimeoutException) for c in chain):
        return "timed out"
    return _one_line(chain[-1]) or type(chain[-1]).__name__
