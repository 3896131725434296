"""The kopf operator: Tenants and Apps in, namespaces, builds and Deployments out.

Reconcile is level-based: every pass renders the wanted objects from the resource as it
is now and applies them with server-side apply (field manager `aerogrid-operator`,
forced), so a pass is idempotent, a restart resumes where it left off (kopf's resume
handlers, then a timer every `resync_seconds`), and anything edited or deleted by hand
comes back. Status is written whole, through the status subresource, only when changed.

By resource: `tenants` (a Tenant's namespace and policies), `apps` (an App's Deployment
and routes, its phase), `builds` (build Jobs and the record of built images); `status`
holds what every pass shares, `registry` registers the kopf handlers, `kopf_config` is
kopf's settings, and `cli` runs it all (``python -m aerogrid_cloud.operator``).
"""

from aerogrid_cloud.operator.apps import deployment_phase
from aerogrid_cloud.operator.cli import connection_info, main, run
from aerogrid_cloud.operator.kopf_config import STORAGE_PREFIX, HashedFilesDiffBase, kopf_settings
from aerogrid_cloud.operator.registry import make_registry
from aerogrid_cloud.operator.status import TENANTS, Cluster

__all__ = [
    "STORAGE_PREFIX",
    "TENANTS",
    "Cluster",
    "HashedFilesDiffBase",
    "connection_info",
    "deployment_phase",
    "kopf_settings",
    "main",
    "make_registry",
    "run",
]
