"""A small client for the platform's resources over the `kubernetes` package.

Why not the generated `CustomObjectsApi` or the `DynamicClient`: promote and the catalog
need four things done exactly — server-side apply (`application/apply-patch+yaml` with a
field manager), get/list/delete, and a watch that survives `410 Gone` — and one clear line
for each way it can fail (no kubeconfig, an unknown context, the cluster unreachable,
RBAC refusing a verb, the CRDs not installed). The dynamic client runs discovery first
and the generated API hides the Status body the apiserver explains itself in, so requests
go through `ApiClient` (its kubeconfig, TLS and token handling) and errors are read here.

    with connect(context="prod") as kube:
        apps = Resources(kube, APPS)
        applied = apps.apply(app_object, field_manager=PROMOTE_MANAGER)
        for event in apps.watch(namespace="aerogrid-acme", resource_version=...):
            ...
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import urllib3
from kubernetes import config as _config
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException

from aerogrid_cloud.model import APP_KIND, APP_PLURAL, GROUP, VERSION

__all__ = [
    "APPS",
    "PROMOTE_MANAGER",
    "STATE_MANAGER",
    "Cancel",
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
    "Resources",
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

_APPLY: Final = "application/apply-patch+yaml"
_JSON: Final = "application/json"
# The kubernetes package's loaders are untyped: these are their shapes, as used here.
_list_contexts: Callable[..., tuple[list[dict[str, Any]], dict[str, Any]]] = (
    _config.list_kube_config_contexts
)
_new_client: Callable[..., ApiClient] = _config.new_client_from_config
_load_incluster: Callable[..., None] = _config.load_incluster_config

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
    """Where a kind lives in the API: enough to build its URLs and explain refusals."""

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

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            if not self.namespaced:
                raise ValueError(f"{self.kind} is cluster-scoped: no namespace")
            root += f"/namespaces/{namespace}"
        root += f"/{self.plural}"
        return root if name is None else f"{root}/{name}"


APPS: Final = ResourceType(GROUP, VERSION, APP_PLURAL, APP_KIND)


# -- connecting --------------------------------------------------------------------------


def _kubeconfig_files(kubeconfig: str | os.PathLike[str] | None) -> list[Path]:
    """The kubeconfig files to read: the argument, else $KUBECONFIG, else ~/.kube/config."""
    raw = os.fspath(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG", "")
    if not raw:
        raw = "~/.kube/config"
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part]


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
        contexts, current = _list_contexts(config_file)
    except (ConfigException, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read kubeconfig {config_file}: {_one_line(exc)}") from None
    names = [str(c.get("name")) for c in contexts or []]
    if context is not None and context not in names:
        raise ConfigError(
            f"no context {context!r} in {config_file} (contexts: {', '.join(names) or 'none'})"
        )
    if context is None and not current:
        raise ConfigError(
            f"{config_file} has no current context: pass --context "
            f"(contexts: {', '.join(names) or 'none'})"
        )
    configuration = Configuration()
    try:
        api = _new_client(
            config_file=config_file,
            context=context,
            persist_config=False,
            client_configuration=configuration,
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise ConfigError(
            f"kubeconfig {config_file}, context {context or current['name']!r}: {_one_line(exc)}"
        ) from None
    return Kube(api, context=context or str(current["name"]), timeout=timeout)


def in_cluster(*, timeout: float = DEFAULT_TIMEOUT) -> Kube:
    """A client with the pod's service-account token (for the catalog's Deployment)."""
    configuration = Configuration()
    try:
        _load_incluster(client_configuration=configuration)
    except ConfigException as exc:
        raise ConfigError(f"not in a cluster: {_one_line(exc)}") from None
    return Kube(ApiClient(configuration), context="in-cluster", timeout=timeout)


# -- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """What the API server said about a refused request (its Status object)."""

    status: int
    reason: str
    message: str
    details: Mapping[str, Any]


class Kube:
    """One API server: raw JSON requests with errors turned into `KubeError`s.

    Thread-safe as `urllib3` is: the catalog watches in a thread while requests run in others.
    """

    def __init__(self, api: ApiClient, *, context: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api = api
        self.context = context
        self.timeout = timeout
        api.user_agent = "aerogrid"

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        close: Callable[[], None] = self.api.close
        close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = _JSON,
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """Send one request; returns the urllib3 response (body not read yet)."""
        headers = {"Accept": _JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                post_params=post,
                _request_timeout=self.timeout if timeout is None else timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"cannot reach the cluster at {self.host} (context {self.context}): "
                f"{_network_reason(exc)}"
            ) from None
        return response.response

    def request(
        self,
        method: Literal["GET", "POST", "PATCH", "PUT", "DELETE"],
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = _JSON,
        action: str = "",
        resource: ResourceType | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """One JSON request; `action`, `resource` and `namespace` make errors readable."""
        raw = self._send(method, path, query=query, body=body, content_type=content_type)
        try:
            data = raw.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(
                f"lost the cluster at {self.host} mid-answer: {_network_reason(exc)}"
            ) from None
        if not 200 <= raw.status < 300:
            failure = _failure(raw.status, data)
            raise self.error_for(failure, action or method.lower(), resource, namespace)
        try:
            parsed = json.loads(data)
        except ValueError:
            raise KubeError(
                f"the API server at {self.host} answered {path} with non-JSON"
            ) from None
        if not isinstance(parsed, dict):
            raise KubeError(f"the API server at {self.host} answered {path} with non-object")
        return parsed

    def stream(
        self,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        read_timeout: float,
        action: str = "watch",
        resource: ResourceType | None = None,
        namespace: str | None = None,
        cancel: Cancel | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The JSON lines of a streaming GET (a watch), until the server ends it.

        `cancel` lets another thread end the stream at once (the catalog's shutdown).
        """
        raw = self._send("GET", path, query=query, timeout=(self.timeout, read_timeout))
        if cancel is not None:
            cancel.attach(raw)
        try:
            if not 200 <= raw.status < 300:
                raise self.error_for(
                    _failure(raw.status, raw.data), action, resource, namespace, watching=True
                )
            buffer = b""
            try:
                for chunk in raw.stream(64 * 1024, decode_content=True):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if cancel is not None and cancel.cancelled:
                    return
                raise Unreachable(
                    f"watch on {self.host} broke off: {_network_reason(exc)}"
                ) from None
        finally:
            if cancel is not None:
                cancel.detach(raw)
            # A watch left before its end must not go back to the pool mid-stream.
            raw.close()
            raw.release_conn()

    def error_for(
        self,
        failure: _Failure,
        action: str,
        resource: ResourceType | None,
        namespace: str | None,
        *,
        watching: bool = False,
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
            kind = str(failure.details.get("kind", ""))
            if kind == "namespaces" and namespace:
                return NotFound(f"namespace {namespace} does not exist: {message}")
            if resource is not None and not failure.details.get("name") and kind != "namespaces":
                # The collection itself is unknown: nobody registered the CRD.
                return CrdMissing(
                    f"the cluster at {self.host} does not serve {what} "
                    f"({resource.api_version}): the AeroGrid platform is not installed there "
                    "(run aerogrid platform install)"
                )
            return NotFound(message or f"{what} not found{where}")
        if status == 409:
            return Conflict(f"conflict: cannot {action} {what}{where}: {message}")
        if status == 410 or (watching and failure.reason == "Expired"):
            return Gone(message or "resource version too old")
        if status in (400, 422):
            return Invalid(
                f"the cluster refused the {resource.kind if resource else 'object'}: {message}"
            )
        return KubeError(
            f"cannot {action} {what}{where}: HTTP {status} {failure.reason}: {message}"
        )


class Cancel:
    """Ends a blocked watch from another thread by shutting its socket down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[Any] = set()
        self.cancelled = False

    def attach(self, response: Any) -> None:
        with self._lock:
            if self.cancelled:
                _shutdown(response)
            self._responses.add(response)

    def detach(self, response: Any) -> None:
        with self._lock:
            self._responses.discard(response)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for response in self._responses:
                _shutdown(response)


def _shutdown(response: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        response.shutdown()


def _failure(status: int, data: bytes) -> _Failure:
    """The Status object of an error answer (or what can be made of a non-Status body)."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        details = body.get("details")
        return _Failure(
            status=int(body.get("code") or status),
            reason=str(body.get("reason", "")),
            message=str(body.get("message", "")),
            details=details if isinstance(details, dict) else {},
        )
    text = data.decode("utf-8", errors="replace").strip()
    return _Failure(status, "", _one_line(text)[:300], {})


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _network_reason(exc: BaseException) -> str:
    """The root cause of a urllib3 failure, without its retry wrapping."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
            cause = cause.reason
        else:
            cause = cause.__cause__ or cause.__context__
    text = " ".join(_one_line(c) for c in chain)
    for found in chain:
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, socket.gaierror):
            return f"unknown host ({found.strerror})"
        if isinstance(found, urllib3.exceptions.SSLError | ssl.SSLError):
            return f"TLS: {_one_line(found)}"
    if "Connection refused" in text:
        return "connection refused"
    # NewConnectionError is a ConnectTimeoutError for urllib3's own reasons: not a timeout.
    if any(
        isinstance(c, TimeoutError | urllib3.exceptions.TimeoutError)
        and not isinstance(c, urllib3.exceptions.NewConnectionError)
        for c in chain
    ):
        return "timed out"
    return _one_line(chain[-1])


# -- one resource type -------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectList:
    """A list's objects and the resourceVersion to watch from."""

    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED or BOOKMARK, with the object (or the bookmark's version)."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class Resources:
    """Get, list, apply, delete and watch one kind (App, mostly) as plain dicts."""

    def __init__(self, kube: Kube, rtype: ResourceType) -> None:
        self.kube = kube
        self.type = rtype

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = PROMOTE_MANAGER,
        force: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply: the fields in `obj` become `field_manager`'s, as given.

        `force` takes over fields another manager set (a promote's files win over an
        edit made with kubectl); fields this manager set before and left out now are removed.
        """
        metadata = obj.get("metadata", {})
        name = str(metadata.get("name", ""))
        namespace = metadata.get("namespace")
        if not name:
            raise ValueError("the object has no metadata.name")
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        return self.kube.request(
            "PATCH",
            self.type.path(namespace, name),
            query=query,
            body=dict(obj),
            content_type=_APPLY,
            action="apply",
            resource=self.type,
            namespace=namespace,
        )

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.kube.request(
            "GET",
            self.type.path(namespace, name),
            action="get",
            resource=self.type,
            namespace=namespace,
        )

    def list(
        self, namespace: str | None = None, *, label_selector: str | None = None
    ) -> ObjectList:
        """Every object (of a namespace, or of all of them)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        data = self.kube.request(
            "GET",
            self.type.path(namespace),
            query=query,
            action="list",
            resource=self.type,
            namespace=namespace,
        )
        items = data.get("items") or []
        return ObjectList(
            items=[item for item in items if isinstance(item, dict)],
            resource_version=str(data.get("metadata", {}).get("resourceVersion", "")),
        )

    def delete(self, name: str, namespace: str | None = None) -> None:
        """Delete, letting the garbage collector take what the object owns (background)."""
        self.kube.request(
            "DELETE",
            self.type.path(namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            action="delete",
            resource=self.type,
            namespace=namespace,
        )

    def watch(
        self,
        namespace: str | None = None,
        *,
        resource_version: str,
        name: str | None = None,
        timeout_seconds: int = 300,
        cancel: Cancel | None = None,
    ) -> Iterator[WatchEvent]:
        """Changes after `resource_version` until the server ends the watch.

        Raises `Gone` when that version is too old (list again); bookmarks are yielded so a
        caller can move its version on without a change.
        """
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if name is not None:
            query.append(("fieldSelector", f"metadata.name={name}"))
        lines = self.kube.stream(
            self.type.path(namespace),
            query=query,
            read_timeout=timeout_seconds + 30,
            resource=self.type,
            namespace=namespace,
            cancel=cancel,
        )
        for line in lines:
            kind = str(line.get("type", ""))
            obj = line.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                failure = _failure(int(obj.get("code") or 500), json.dumps(obj).encode())
                raise self.kube.error_for(failure, "watch", self.type, namespace, watching=True)
            yield WatchEvent(kind, obj)
