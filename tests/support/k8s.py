"""A real Kubernetes control plane for the cloud tests: etcd, kube-apiserver and controllers.

The binaries are built from Go modules by ``scripts/build_k8s.sh`` (once, cached under
``~/.cache/aerogrid/k8s/<kubernetes version>-<etcd version>/``; see cloud/testbed/) together with
Istio's CRDs from the ``istio.io/api`` module. `KubeTestbed` runs them like the broker launchers
run Kafka: processes on 127.0.0.1 only, each in its own process group, stopped at the end.

What the bed is, and is not:

* The API server is real: authentication by client certificates from a throwaway CA, RBAC and Node
  authorization, the default admission chain with **PodSecurity on** (so a namespace labelled
  ``pod-security.kubernetes.io/enforce=restricted`` really rejects a privileged pod), server-side
  apply, CRD schema validation, watches.
* kube-controller-manager runs the controllers in `CONTROLLERS`: Deployments get ReplicaSets and
  ReplicaSets create Pods, owner references cascade (garbage collector), namespaces terminate,
  ResourceQuotas get a status, each namespace gets its ``default`` ServiceAccount.
* **No kubelet and no scheduler run** in this bed alone: Pods are admitted and stored but never
  scheduled or started, so they stay Pending and nothing ever becomes Ready. Deployment
  ``availableReplicas`` stays 0. Test what the API server and the controllers do, not what
  containers do. A real node (kubelet, scheduler, containerd) is `support.k8s_node.KubeNode`,
  which runs its own bed bound to the node's bridge address (``bind_address``).
* Istio's CRDs are installed (schemas only): istiod and its validating webhook are absent.

Use it through the ``kube`` fixture in tests/cloud/conftest.py:

* ``kube.api_client()`` is an admin ``kubernetes.client.ApiClient`` (``system:masters``);
  ``kube.api_client("alice", groups=["tenant-a"])`` one for any user and groups (RBAC applies).
* ``kube.admin_kubeconfig`` / ``kube.user_kubeconfig("alice", ["tenant-a"])`` are kubeconfig files
  (credentials inline) for kopf, subprocesses and ``KUBECONFIG``.
* ``kube.server`` is the ``https://127.0.0.1:PORT`` URL, ``kube.ca_cert`` the CA file.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import http.client
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from support.brokers import HOST, _spawn, _terminate_groups, free_port
from support.lifecycle import Started
from support.tls import CA_KEY_USAGE

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_k8s.sh"
TESTBED_SOURCES = REPO_ROOT / "cloud" / "testbed"

#: The controllers kube-controller-manager runs: what the operator, catalog and promote tests
#: rely on (workloads, owner-reference cascades, namespaces, quotas, service accounts, RBAC's
#: aggregated admin/edit/view roles, disruption budgets' status), and nothing that needs
#: nodes or a cloud.
CONTROLLERS: Final = (
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "disruption-controller",
    "job-controller",
    "resourcequota-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "ttl-after-finished-controller",
)

#: The CRDs the tests rely on (Istio ships a few more; all are installed).
ISTIO_CRDS: Final = (
    "virtualservices.networking.istio.io",
    "gateways.networking.istio.io",
    "destinationrules.networking.istio.io",
    "authorizationpolicies.security.istio.io",
    "requestauthentications.security.istio.io",
    "peerauthentications.security.istio.io",
)

#: Labels of a namespace where Pod Security admission enforces `restricted`, as the operator's are.
RESTRICTED_LABELS: Final[Mapping[str, str]] = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
ADMIN_USER: Final = "aerogrid-test-admin"
ADMIN_GROUPS: Final = ("system:masters",)
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE: Final = "10.96.0.0/24"
#: A stray ETCD_* variable would reconfigure the test etcd (etcd reads flags from the environment).
_ENV_PREFIXES_DROPPED: Final = ("ETCD_",)
_ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)


class KubeUnavailable(RuntimeError):
    """A prerequisite (Go, to build the binaries) is missing: callers may skip, CI must fail."""


class KubeStartError(RuntimeError):
    """A component was launched but did not become ready; the message carries its log tail."""


# --- the build ----------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(os.environ.get("AEROGRID_CACHE") or Path.home() / ".cache" / "aerogrid")


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(
        rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE
    )
    if match is None:
        raise RuntimeError(f"{go_mod} requires no {module}: run scripts/build_k8s.sh --update")
    return match.group(1)


def kube_version() -> str:
    """The Kubernetes release the bed runs (``k8s.io/kubernetes`` in cloud/testbed/kube/go.mod)."""
    return _required_version(TESTBED_SOURCES / "kube" / "go.mod", "k8s.io/kubernetes")


def etcd_version() -> str:
    """The etcd release the bed runs (cloud/testbed/etcd/go.mod)."""
    return _required_version(TESTBED_SOURCES / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3")


def testbed_home() -> Path:
    """``~/.cache/aerogrid/k8s/<kubernetes>-<etcd>`` (``AEROGRID_CACHE`` moves the root)."""
    return _cache_root() / "k8s" / f"{kube_version()}-{etcd_version()}"


def testbed_built() -> bool:
    """True when a complete build is cached (whether it is current is the script's call)."""
    return (testbed_home() / ".complete").is_file()


def build_testbed(timeout: float = 3600.0) -> Path:
    """Run scripts/build_k8s.sh (a no-op once built) and return the folder it printed.

    The script's progress goes to this process's stderr: a cold build takes many minutes.
    """
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode == 3:
        raise KubeUnavailable(proc.stderr.strip())
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise KubeStartError(f"build_k8s.sh failed ({proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


# --- certificates -------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


class _CertificateAuthority:
    """A throwaway CA (EC P-256: generation takes milliseconds) that signs the bed's certificates.

    Kubernetes reads a client certificate's CN as the user name and each O as a group.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aerogrid-test-kube-ca")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                CA_KEY_USAGE,
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = folder / "ca.crt"
        self.cert_path.write_bytes(_pem(self._cert))
        self.cert_pem = _pem(self._cert)

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server_names: Sequence[str] = (),
    ) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` signed by this CA; return their paths.

        With `server_names` (IPs or DNS names) it is a serving certificate, else a client one.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if server_names:
            names: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    names.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_path.write_bytes(_pem(cert))
        _write_private(key_path, _key_pem(key))
        return cert_path, key_path


@dataclass(frozen=True)
class KubeUser:
    """A user the API server knows by a client certificate (CN = name, O = groups)."""

    name: str
    groups: tuple[str, ...]
    cert: Path
    key: Path
    kubeconfig: Path


# --- the test bed -------------------------------------------------------------------------------

_live_beds: weakref.WeakSet[KubeTestbed] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Backstop: stop any test bed a caller forgot to stop (support.brokers kills the processes)."""
    for bed in list(_live_beds):
        bed.stop(grace=0.0)


class KubeTestbed(Started):
    """etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, with Istio's CRDs.

    `start()` (or ``with``) builds the binaries if needed (see `build_testbed`), makes a CA and
    serving, client and service-account keys in a temp dir, starts the processes on free ports and
    returns once /readyz answers, the controllers run and the CRDs are established. `stop()` ends
    them.
    """

    def __init__(
        self,
        *,
        controller_manager: bool = True,
        istio_crds: bool = True,
        startup_timeout: float = 180.0,
        keep_workdir: bool = False,
        bind_address: str = HOST,
        controllers: Sequence[str] = CONTROLLERS,
    ) -> None:
        self.controller_manager = controller_manager
        self.controllers = tuple(controllers)
        #: Where the API server listens and what it advertises: loopback, or a node's bridge
        #: address so pods reach it through the `kubernetes` Service (support.k8s_node).
        self.bind_address = bind_address
        self.istio_crds = istio_crds
        self.startup_timeout = startup_timeout
        self.keep_workdir = keep_workdir or os.environ.get("AEROGRID_KEEP_KUBE_DIRS") == "1"
        #: Seconds from launching etcd to everything ready (excludes any build).
        self.startup_seconds: float | None = None
        self._home: Path | None = None
        self._workdir: Path | None = None
        self._ca: _CertificateAuthority | None = None
        self._users: dict[tuple[str, tuple[str, ...]], KubeUser] = {}
        self._users_lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._port: int | None = None
        self._etcd_port: int | None = None

    # - availability -

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why the bed cannot run on this machine, or None when it can."""
        if not sys.platform.startswith("linux"):
            return "the Kubernetes test bed runs on Linux only"
        if shutil.which("go") is None and not testbed_built():
            return (
                "the Kubernetes test bed needs Go (`go` on PATH) to build kube-apiserver, "
                "kube-controller-manager and etcd from Go modules (scripts/build_k8s.sh)"
            )
        return None

    # - public API -

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the Kubernetes test bed is not started")
        return self._workdir

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Kubernetes test bed is not started")
        return self._port

    @property
    def server(self) -> str:
        """The API server's URL, ``https://127.0.0.1:PORT`` (or the `bind_address`)."""
        return f"https://{self.bind_address}:{self.port}"

    @property
    def etcd_url(self) -> str:
        if self._etcd_port is None:
            raise RuntimeError("the Kubernetes test bed is not started")
        return f"http://{HOST}:{self._etcd_port}"

    @property
    def version(self) -> str:
        """The Kubernetes release, e.g. ``v1.37.2`` (what /version answers as gitVersion)."""
        return kube_version()

    @property
    def ca_cert(self) -> Path:
        """The CA file that signed the API server's certificate (and every client certificate)."""
        return self._authority().cert_path

    @property
    def admin(self) -> KubeUser:
        """The ``system:masters`` user the fixture itself uses."""
        return self.user(ADMIN_USER, ADMIN_GROUPS)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.admin.kubeconfig

    def log_path(self, component: str) -> Path:
        """``etcd``, ``kube-apiserver`` or ``kube-controller-manager``: its stdout and stderr."""
        return self.workdir / f"{component}.log"

    def user(self, name: str, groups: Iterable[str] = ()) -> KubeUser:
        """A client certificate and kubeconfig for `name` in `groups` (made once, then reused).

        Nothing is granted: bind Roles to the name or a group as the test needs.
        """
        key = (name, tuple(groups))
        with self._users_lock:
            if key not in self._users:
                self._users[key] = self._make_user(*key)
            return self._users[key]

    def issue_serving_certificate(self, stem: str, names: Sequence[str]) -> tuple[Path, Path]:
        """A serving certificate (and key) for `names` signed by the bed's CA (a kubelet's)."""
        return self._authority().issue(stem, names[0], server_names=names)

    @property
    def pids(self) -> dict[str, int]:
        """Each running component's process id, by name (for memory figures)."""
        return {name: proc.pid for name, proc in self._procs.items() if proc.poll() is None}

    def user_kubeconfig(self, name: str, groups: Iterable[str] = ()) -> Path:
        """A kubeconfig file (certificates inline) for `name` in `groups`."""
        return self.user(name, groups).kubeconfig

    def configuration(
        self, user: str | None = None, groups: Iterable[str] = ()
    ) -> client.Configuration:
        """A ``kubernetes.client.Configuration`` for the admin (default) or `user` in `groups`."""
        who = self.admin if user is None else self.user(user, groups)
        return client.Configuration(
            host=self.server,
            ssl_ca_cert=str(self.ca_cert),
            cert_file=str(who.cert),
            key_file=str(who.key),
        )

    def api_client(self, user: str | None = None, groups: Iterable[str] = ()) -> client.ApiClient:
        """A new ``ApiClient`` as the admin (default) or `user` in `groups`; close it when done."""
        return client.ApiClient(self.configuration(user, groups))

    def create_namespace(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        wait_for_service_account: bool = True,
        timeout: float = 30.0,
    ) -> client.V1Namespace:
        """Create a namespace; by default wait for its ``default`` ServiceAccount.

        ServiceAccount admission refuses pods (and so ReplicaSets their pods) until
        kube-controller-manager has created that account, a few hundred ms after the namespace.
        """
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            namespace = core.create_namespace(
                client.V1Namespace(
                    metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {}))
                )
            )
            if wait_for_service_account and self.controller_manager:
                wait_for(
                    lambda: _exists(lambda: core.read_namespaced_service_account("default", name)),
                    timeout,
                    f"the default ServiceAccount of namespace {name}",
                )
        return namespace

    def start(self) -> Self:
        reason = self.unavailable_reason()
        if reason is not None:
            raise KubeUnavailable(reason)
        self._home = build_testbed()
        for attempt in range(3):
            self._workdir = Path(tempfile.mkdtemp(prefix="aerogrid-kube-"))
            _live_beds.add(self)
            try:
                self._launch_all()
                return self
            except KubeStartError:
                logs = "".join(
                    self.log_path(name).read_text(errors="replace")
                    for name in self._procs
                    if self.log_path(name).exists()
                )
                self._teardown(keep=self.keep_workdir, grace=0.0)
                # Another process took a port between free_port() and the bind: try new ports.
                if attempt < 2 and _ADDRESS_IN_USE.search(logs):
                    continue
                raise
            except BaseException:
                self._teardown(keep=self.keep_workdir, grace=0.0)
                raise
        raise AssertionError("unreachable")

    def stop(self, grace: float = 5.0) -> None:
        self._teardown(keep=self.keep_workdir, grace=grace)

    def __repr__(self) -> str:
        where = self.server if self._port is not None else "stopped"
        return f"<KubeTestbed {kube_version()} etcd {etcd_version()} {where}>"

    # - internals -

    def _authority(self) -> _CertificateAuthority:
        if self._ca is None:
            raise RuntimeError("the Kubernetes test bed is not started")
        return self._ca

    def _binary(self, name: str) -> str:
        assert self._home is not None
        return str(self._home / "bin" / name)

    def _make_user(self, name: str, groups: tuple[str, ...]) -> KubeUser:
        ca = self._authority()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        stem = f"users/{safe}-{len(self._users)}"
        (ca.folder / "users").mkdir(exist_ok=True)
        cert, key = ca.issue(stem, name, organizations=groups)
        kubeconfig = ca.folder / f"{stem}.kubeconfig"
        _write_private(kubeconfig, _kubeconfig(self.server, ca.cert_pem, name, cert, key).encode())
        return KubeUser(name=name, groups=groups, cert=cert, key=key, kubeconfig=kubeconfig)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}
        proc = _spawn(argv, cwd=self.workdir, log_path=self.log_path(name), env=env)
        self._procs[name] = proc
        return proc

    def _launch_all(self) -> None:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        pki = self.workdir / "pki"
        pki.mkdir()
        self._ca = ca = _CertificateAuthority(pki)
        self._users.clear()
        serving_cert, serving_key = ca.issue(
            "kube-apiserver",
            "kube-apiserver",
            server_names=(
                HOST,
                *((self.bind_address,) if self.bind_address != HOST else ()),
                "localhost",
                str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts())),
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        # How the API server proves itself to kubelets (logs, exec): any user of the CA.
        kubelet_client_cert, kubelet_client_key = ca.issue(
            "kube-apiserver-kubelet-client", "kube-apiserver-kubelet-client"
        )
        sa_key = ec.generate_private_key(ec.SECP256R1())
        sa_private, sa_public = pki / "sa.key", pki / "sa.pub"
        _write_private(sa_private, _key_pem(sa_key))
        sa_public.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        # etcd: plain HTTP on loopback; no fsync, the data dies with the test session anyway.
        self._etcd_port, peer_port = free_port(), free_port()
        etcd_peer = f"http://{HOST}:{peer_port}"
        self._spawn(
            "etcd",
            [
                self._binary("etcd"),
                "--name=testbed",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=testbed={etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_ready("etcd", self._etcd_healthy, deadline)

        self._port = free_port()
        admission_off = [] if self.controller_manager else ["ServiceAccount"]
        self._spawn(
            "kube-apiserver",
            [
                self._binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                # 1.37 refuses a loopback advertise address with the lease reconciler: on loopback
                # no pod reaches the API through the `kubernetes` Service, so keep its Endpoints
                # off; on a node's bridge address they point pods (via kube-proxy) at it.
                f"--endpoint-reconciler-type={'none' if self.bind_address == HOST else 'lease'}",
                f"--secure-port={self._port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={ca.cert_path}",
                f"--kubelet-client-certificate={kubelet_client_cert}",
                f"--kubelet-client-key={kubelet_client_key}",
                f"--kubelet-certificate-authority={ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                # The defaults plus NodeRestriction, as kubeadm runs it; PodSecurity stays on.
                "--enable-admission-plugins=NodeRestriction,PodSecurity",
                *(f"--disable-admission-plugins={p}" for p in admission_off),
                # So PodSecurity (not the cluster-wide flag) is what refuses privileged pods.
                "--allow-privileged=true",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_ready("kube-apiserver", self._apiserver_ready, deadline)

        if self.controller_manager:
            # system:masters: with --use-service-account-credentials=false every controller acts
            # as this one user, and the bootstrap system:kube-controller-manager role is too narrow.
            kcm = self.user("system:kube-controller-manager", ADMIN_GROUPS)
            self._spawn(
                "kube-controller-manager",
                [
                    self._binary("kube-controller-manager"),
                    f"--kubeconfig={kcm.kubeconfig}",
                    f"--controllers={','.join(self.controllers)}",
                    "--leader-elect=false",
                    "--secure-port=0",  # no health endpoint: nothing to bind, nothing to clash
                    "--use-service-account-credentials=false",
                    f"--service-account-private-key-file={sa_private}",
                    f"--root-ca-file={ca.cert_path}",
                    f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                    "--v=1",
                ],
            )
            self._wait_ready("kube-controller-manager", self._controllers_running, deadline)

        if self.istio_crds:
            self._install_istio_crds(deadline)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, name: str, check: Callable[[], bool], deadline: float) -> None:
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._fail(name, f"{name} exited with {proc.returncode} while starting")
            if check():
                return
            time.sleep(0.1)
        raise self._fail(name, f"{name} was not ready within {self.startup_timeout:.0f} s")

    def _fail(self, name: str, message: str) -> KubeStartError:
        try:
            lines = self.log_path(name).read_text(errors="replace").splitlines()[-60:]
        except OSError:
            lines = ["(no log)"]
        tail = "\n".join(lines)
        return KubeStartError(f"{message}; {self.log_path(name)} ends with:\n{tail}")

    def _etcd_healthy(self) -> bool:
        assert self._etcd_port is not None
        status, body = _http_get(HOST, self._etcd_port, "/health", None)
        try:
            return status == 200 and json.loads(body).get("health") == "true"
        except ValueError:
            return False

    def _admin_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return context

    def _apiserver_ready(self) -> bool:
        status, _ = _http_get(self.bind_address, self.port, "/readyz", self._admin_ssl())
        return status == 200

    def _controllers_running(self) -> bool:
        # The serviceaccount controller gives every namespace its `default` account: once the
        # one in `default` exists, the controllers' informers have synced and they are working.
        with self.api_client() as api:
            return _exists(
                lambda: client.CoreV1Api(api).read_namespaced_service_account("default", "default")
            )

    def _install_istio_crds(self, deadline: float) -> None:
        assert self._home is not None
        documents = [
            doc
            for doc in yaml.safe_load_all((self._home / "istio-crds.yaml").read_text())
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]
        missing = set(ISTIO_CRDS) - {doc["metadata"]["name"] for doc in documents}
        if missing:
            raise KubeStartError(f"istio-crds.yaml lacks {sorted(missing)}")
        with self.api_client() as api:
            extensions = client.ApiextensionsV1Api(api)
            # Posted as plain JSON (the generic custom-object path fits /apis/GROUP/VERSION/PLURAL):
            # a round trip through the typed models could drop schema details.
            custom = client.CustomObjectsApi(api)
            for doc in documents:
                custom.create_cluster_custom_object(
                    "apiextensions.k8s.io", "v1", "customresourcedefinitions", doc
                )
            pending = {doc["metadata"]["name"] for doc in documents}
            while pending and time.monotonic() < deadline:
                for name in sorted(pending):
                    crd = extensions.read_custom_resource_definition(name)
                    conditions = (crd.status.conditions if crd.status else None) or []
                    if any(c.type == "Established" and c.status == "True" for c in conditions):
                        pending.discard(name)
                if pending:
                    time.sleep(0.1)
        if pending:
            raise self._fail("kube-apiserver", f"Istio CRDs not established: {sorted(pending)}")

    def _teardown(self, *, keep: bool, grace: float = 5.0) -> None:
        _live_beds.discard(self)
        # Controllers first, etcd last, so nothing logs storms of "connection refused".
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _terminate_groups([proc], grace)
        self._procs.clear()
        if self._workdir is not None and not keep:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._port = self._etcd_port = None
        self._ca = None
        self._users.clear()
        if not keep:
            self._workdir = None


def _kubeconfig(server: str, ca_pem: bytes, user: str, cert: Path, key: Path) -> str:
    """A kubeconfig with everything inline, so it works from any folder and for kopf."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "aerogrid-testbed",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert.read_bytes()),
                    "client-key-data": b64(key.read_bytes()),
                },
            }
        ],
        "contexts": [
            {"name": "aerogrid-testbed", "context": {"cluster": "aerogrid-testbed", "user": user}}
        ],
        "current-context": "aerogrid-testbed",
    }
    return yaml.safe_dump(config, sort_keys=False)


def _http_get(
    host: str, port: int, path: str, context: ssl.SSLContext | None
) -> tuple[int | None, bytes]:
    """GET `path`: (status, body), or (None, b"") when the server does not answer yet."""
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection(host, port, timeout=2.0, context=context)
        if context is not None
        else http.client.HTTPConnection(host, port, timeout=2.0)
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def _exists(read: Callable[[], object]) -> bool:
    """True when `read()` succeeds, False on 404 (other API errors propagate)."""
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "a condition") -> None:
    """Poll `check` every 50 ms until it is true; TimeoutError naming `what` after `timeout` s.

    Controllers act asynchronously (a ReplicaSet appears some ms after its Deployment): tests use
    this instead of sleeping.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
