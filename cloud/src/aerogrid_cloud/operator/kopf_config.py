"""kopf configured for the platform: where it keeps its state, what it watches.

kopf keeps its last-handled state in an annotation; an App's spec holds its files, which
can exceed the 256 KiB annotation limit (kopf #1087). `HashedFilesDiffBase` stores the
files as one hash instead, and progress goes to annotations under `aerogrid.io/`, never
into `status` (whose schema is the App's own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import kopf

from aerogrid_cloud.model import (
    APP_LABEL,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_LABEL,
    TENANT_PLURAL,
    VERSION,
)
from aerogrid_cloud.render import FIELD_MANAGER, files_digest

__all__ = ["STORAGE_PREFIX", "HashedFilesDiffBase", "kopf_settings"]

#: kopf's annotations (progress, diff base) live under this prefix.
STORAGE_PREFIX: Final = "aerogrid.io"


class HashedFilesDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled state with `spec.files` replaced by one hash of the files.

    The annotation stays small whatever the files weigh, and a changed file still changes
    the hash, so kopf still sees the update.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        spec = essence.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("files"), Mapping):
            spec["files"] = "sha256:" + files_digest(spec["files"])
        return essence


def selector_text(labels: Mapping[str, str | None]) -> str:
    """A label selector: `key=value`, or just `key` for "has this label"."""
    return ",".join(key if value is None else f"{key}={value}" for key, value in labels.items())


def kopf_settings(
    *, scanning: bool = False, selector: Mapping[str, str] | None = None
) -> kopf.OperatorSettings:
    """kopf configured for the platform: small annotations, no status writes, no peering.

    `scanning` lets kopf follow namespaces (needed for namespace patterns; the deployed
    operator serves the whole cluster and has no RBAC to list namespaces or CRDs).
    Watches are filtered by the API server: only the Deployments and quotas the
    operator made, and (with `selector`) only the Tenants and Apps with those labels.
    """
    settings = kopf.OperatorSettings()
    watched = settings.watching.label_selectors
    watched["apps", "v1", "deployments"] = selector_text({**MANAGED_BY, APP_LABEL: None})
    watched["", "v1", "resourcequotas"] = selector_text({**MANAGED_BY, TENANT_LABEL: None})
    if selector:
        for plural in (APP_PLURAL, TENANT_PLURAL):
            watched[GROUP, VERSION, plural] = selector_text(selector)
    settings.persistence.diffbase_storage = HashedFilesDiffBase(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.finalizer = f"{STORAGE_PREFIX}/operator"
    settings.scanning.disabled = not scanning
    settings.posting.reporting_component = FIELD_MANAGER
    # A watch that went quiet is restarted rather than trusted (kopf #1276): the server ends
    # each watch after this long and kopf's inactivity timeout catches dead connections.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    return settings
