"""Every Kubernetes and Istio object the platform makes, as plain dicts (no cluster access).

Each is a pure function of a spec and the `PlatformSettings`, in one module per family:

* `tenant`: a tenant's namespace, quota, limits, default-deny network, identity policy;
* `app`: an App's code ConfigMap, ServiceAccount, Deployment, Service and VirtualService;
* `build`: the Job (pip, then buildah) that bakes an app's requirements into an image;
* `platform`: CRDs, operator, catalog, Gateway and mesh-wide mTLS;

with `identity` (Istio token check and members-only rule) and `rbac` (who may do what)
shared by them, and `common` for labels, ownership, security contexts and API kinds.
"""

from aerogrid_cloud.model import tenant_of
from aerogrid_cloud.render.app import (
    app_image,
    app_labels,
    app_objects,
    files_configmap_name,
    files_digest,
)
from aerogrid_cloud.render.build import (
    BUILT_IMAGES,
    Build,
    build_for,
    build_objects,
    built_images_configmap,
)
from aerogrid_cloud.render.common import (
    FIELD_MANAGER,
    GRPC_PORT,
    HTTP_PORT,
    Owner,
    RenderError,
    resource_type,
)
from aerogrid_cloud.render.platform import platform_objects
from aerogrid_cloud.render.rbac import (
    CATALOG_RULES,
    DEVELOPER_ROLE,
    DEVELOPER_RULES,
    OPERATOR_BUILD_RULES,
    OPERATOR_RULES,
)
from aerogrid_cloud.render.tenant import tenant_labels, tenant_objects

__all__ = [
    "BUILT_IMAGES",
    "CATALOG_RULES",
    "DEVELOPER_ROLE",
    "DEVELOPER_RULES",
    "FIELD_MANAGER",
    "GRPC_PORT",
    "HTTP_PORT",
    "OPERATOR_BUILD_RULES",
    "OPERATOR_RULES",
    "Build",
    "Owner",
    "RenderError",
    "app_image",
    "app_labels",
    "app_objects",
    "build_for",
    "build_objects",
    "built_images_configmap",
    "files_configmap_name",
    "files_digest",
    "platform_objects",
    "resource_type",
    "tenant_labels",
    "tenant_objects",
    "tenant_of",
]
