"""The App and Tenant CustomResourceDefinitions, their schemas generated from the models.

The OpenAPI v3 schemas come from the pydantic models in `model.py` (one source of truth)
turned into Kubernetes' *structural* dialect: `$ref`s inlined, `anyOf [X, null]` made
`nullable`, titles and `additionalProperties: false` dropped (the API server prunes
unknown fields instead). Rules pydantic checks in Python code are restated where the API
server can check them too (CEL), so a malformed App is refused at the door with a
message rather than failing later in the operator.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic import BaseModel

from aerogrid_cloud.model import (
    APP_KIND,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_KIND,
    TENANT_PLURAL,
    VERSION,
    AppSpec,
    AppStatus,
    TenantSpec,
    TenantStatus,
)

__all__ = ["APP_SHORT_NAMES", "TENANT_SHORT_NAMES", "app_crd", "crds", "structural", "tenant_crd"]

APP_SHORT_NAMES: Final = ["agapp"]
TENANT_SHORT_NAMES: Final = ["agtenant", "agt"]
#: `kubectl get aerogrid` lists both kinds.
CATEGORY: Final = "aerogrid"

_DNS_LABEL_RULE: Final = "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
#: A tenant's namespace is `aerogrid-<name>`, and a namespace is at most 63 characters.
TENANT_NAME_MAX: Final = 63 - len("aerogrid-")
#: Keys the generator drops: documentation for people (kept as `description`) or
#: JSON-schema features the structural dialect has no use for.
_DROP: Final = {"title", "$defs"}


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema (by alias) in Kubernetes' structural OpenAPI v3 dialect."""
    schema = model.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.get("$defs", {})
    converted: dict[str, Any] = _convert(schema, defs)
    return converted


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
        target.update(node)  # siblings of $ref (a default, a description) win
        return _convert(target, defs)
    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        others = [branch for branch in any_of if branch != {"type": "null"}]
        if len(others) == 1 and len(others) < len(any_of):
            del node["anyOf"]
            merged = {**others[0], **node, "nullable": True}
            if merged.get("default", ...) is None:
                del merged["default"]
            return _convert(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split())
        else:
            out[key] = _convert(value, defs)
    return out


def _map_list(schema: dict[str, Any], key: str = "name") -> None:
    """A list of objects keyed by `key`: duplicates refused, server-side apply merges by key."""
    schema["x-kubernetes-list-type"] = "map"
    schema["x-kubernetes-list-map-keys"] = [key]


def app_schema() -> dict[str, Any]:
    """The App's whole-object schema: spec and status from the models, plus server rules."""
    spec = structural(AppSpec)
    files = spec["properties"]["files"]
    files["description"] = "The app's folder by file name: app.py, requirements.txt, others."
    files["x-kubernetes-validations"] = [
        {"rule": "'app.py' in self", "message": "files must hold app.py"}
    ]
    _map_list(spec["properties"]["env"])
    _map_list(spec["properties"]["secretRefs"])
    status = structural(AppStatus)
    _map_list(status["properties"]["conditions"], "type")
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": spec, "status": status},
        "x-kubernetes-validations": [
            {
                "rule": f"{_DNS_LABEL_RULE} && size(self.metadata.name) <= 63",
                "message": "an App's name must be a DNS label (lower-case letters, digits, "
                "'-'; at most 63): it becomes part of the app's host",
            }
        ],
    }


def tenant_schema() -> dict[str, Any]:
    """The Tenant's whole-object schema; its name must fit in a namespace name."""
    spec = structural(TenantSpec)
    groups = spec["properties"]["groups"]
    groups["x-kubernetes-list-type"] = "set"
    groups["items"]["minLength"] = 1
    status = structural(TenantStatus)
    _map_list(status["properties"]["conditions"], "type")
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": spec, "status": status},
        "x-kubernetes-validations": [
            {
                "rule": f"{_DNS_LABEL_RULE} && size(self.metadata.name) <= {TENANT_NAME_MAX}",
                "message": "a Tenant's name must be a DNS label of at most "
                f"{TENANT_NAME_MAX} characters: its namespace is aerogrid-<name>",
            }
        ],
    }


def _crd(
    *,
    kind: str,
    plural: str,
    scope: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": dict(MANAGED_BY)},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def app_crd() -> dict[str, Any]:
    return _crd(
        kind=APP_KIND,
        plural=APP_PLURAL,
        scope="Namespaced",
        short_names=APP_SHORT_NAMES,
        schema=app_schema(),
        columns=[
            _column("Phase", ".status.phase"),
            _column("Ready", ".status.readyReplicas", "integer"),
            _column("Replicas", ".status.replicas", "integer"),
            _column("Image", ".status.image"),
            _column("Endpoint", ".status.endpoint"),
            _column("Message", ".status.message", priority=1),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def tenant_crd() -> dict[str, Any]:
    return _crd(
        kind=TENANT_KIND,
        plural=TENANT_PLURAL,
        scope="Cluster",
        short_names=TENANT_SHORT_NAMES,
        schema=tenant_schema(),
        columns=[
            _column("Namespace", ".status.namespace"),
            _column("Groups", ".spec.groups"),
            _column("Phase", ".status.phase"),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def crds() -> list[dict[str, Any]]:
    """Both CRDs, Tenant first (apps live in tenants' namespaces)."""
    return [tenant_crd(), app_crd()]
