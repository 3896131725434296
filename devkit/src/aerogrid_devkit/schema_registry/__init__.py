"""A real schema registry (Apicurio Registry, Confluent-compatible API) for tests and the devkit."""

from aerogrid_devkit.schema_registry.install import (
    REGISTRY_VERSION,
    RegistryError,
    registry_app,
    registry_home,
)
from aerogrid_devkit.schema_registry.process import (
    CCOMPAT_PATH,
    RegistryOidc,
    RegistryProcess,
    RegistryTls,
)

__all__ = [
    "CCOMPAT_PATH",
    "REGISTRY_VERSION",
    "RegistryError",
    "RegistryOidc",
    "RegistryProcess",
    "RegistryTls",
    "registry_app",
    "registry_home",
]
