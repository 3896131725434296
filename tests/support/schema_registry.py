"""The real schema registry for the tests: Apicurio Registry 2.4.2.Final on a loopback port.

Built once into the cache by scripts/build_schema_registry.sh (`make schema-registry`; built here
on first use when Maven is on the PATH), run by the devkit's `RegistryProcess` with H2 *file*
storage in a temporary folder: `stop()` then `start()` (same port) keeps every schema and id, so an
outage test sees the ids it saw before. The session fixtures `schema_registry` and
`auth_registry` (tests/conftest.py) start one lazily, only when a test asks for it.

Authentication is the registry's own, not a stand-in: Apicurio 2.4 takes HTTP basic credentials and
exchanges them for a token at an OIDC issuer (client-credentials grant), so `auth=True` starts the
tiny issuer of support.oidc_issuer beside it with one client (`username`, a random `password`).
`tls=True` serves HTTPS only, with a certificate from support.tls's throwaway CA (`cafile`). Mutual
TLS is not offered: Quarkus 2.16 reads client-trust only from JKS/PKCS12 stores, not PEM.
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.schema_registry import (
    RegistryError,
    RegistryOidc,
    RegistryProcess,
    RegistryTls,
    registry_app,
)
from support.oidc_issuer import OidcIssuer
from support.paths import REPO
from support.tls import make_test_pki

__all__ = ["BUILD_SCRIPT", "RegistryUnavailable", "TestRegistry", "ensure_registry_built"]

BUILD_SCRIPT = REPO / "scripts" / "build_schema_registry.sh"
_live: weakref.WeakSet[TestRegistry] = weakref.WeakSet()


class RegistryUnavailable(Exception):
    """This machine cannot run the registry (no Java 17, not built and no Maven)."""


def ensure_registry_built() -> Path:
    """The built app folder. With Maven present the build script always runs: it returns at once
    when its stamp names the current recipe, and rebuilds (about 30 s) when the recipe changed."""
    if shutil.which("mvn") is None:
        try:
            return registry_app()
        except RegistryError as missing:
            raise RegistryUnavailable(f"{missing}; and `mvn` is not on PATH") from None
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode == 3:
        raise RegistryUnavailable(done.stderr.strip())
    if done.returncode != 0:
        raise RegistryError(f"{BUILD_SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    return registry_app()


class TestRegistry:
    """A registry with its own temporary folder (storage and log), removed by `close()`.

    `url` is the Confluent-compatible API (http://127.0.0.1:PORT/apis/ccompat/v7). `stop()` /
    `start()` / `kill()` make outages on the same port; schemas and ids survive them.
    With `auth=True` every request needs basic credentials: `username` / `password`.
    """

    __test__ = False  # not a pytest test class
    USERNAME = "aerogrid-app"

    def __init__(self, *, auth: bool = False, tls: bool = False, persistent: bool = True) -> None:
        java, said = find_java()
        if java is None:
            raise RegistryUnavailable(f"the schema registry needs Java 17+: {said}")
        app = ensure_registry_built()
        self.username: str | None = None
        self.password: str | None = None
        self.issuer: OidcIssuer | None = None
        oidc: RegistryOidc | None = None
        if auth:
            self.username, self.password = self.USERNAME, secrets.token_urlsafe(12)
            self.issuer = OidcIssuer({self.username: self.password})
            self.issuer.start()
            oidc = RegistryOidc(
                issuer=self.issuer.issuer,
                token_endpoint=self.issuer.token_endpoint,
                probe_user=(self.username, self.password),
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="aerogrid-registry-"))
        self.cafile: Path | None = None
        served_tls: RegistryTls | None = None
        if tls:
            pki = make_test_pki(self.workdir / "pki")
            self.cafile = pki.ca_cert
            served_tls = RegistryTls(pki.server_cert, pki.server_key, cafile=pki.ca_cert)
        self.process = RegistryProcess(
            data_dir=self.workdir / "data" if persistent else None,
            log_file=self.workdir / "registry.log",
            oidc=oidc,
            tls=served_tls,
            java=java.path,
            app_dir=app,
        )
        _live.add(self)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.process.restart()

    def close(self) -> None:
        """Stop the registry (and its issuer) and remove its folder."""
        self.process.stop()
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        _live.discard(self)


@atexit.register
def _close_leftovers() -> None:
    """Backstop: a registry never outlives the test session."""
    for registry in list(_live):
        registry.close()
