"""A local development certificate, so the local endpoint can serve the Excel add-in over HTTPS.

Office loads an add-in's pages over HTTPS only, also from localhost. So the devkit makes
its own small certificate authority (once per user) and a server certificate for
`localhost`, `127.0.0.1` and `::1` signed by it; the user trusts the CA once
(`aerogrid excel certificate --install`) and every later server certificate is trusted.

* The CA is kept across runs (trusting it is the manual step); it is made again only
  when missing, unreadable or about to expire, and then has to be trusted again.
* The CA can sign for local names only: basicConstraints CA:true, pathlen 0, and name
  constraints (localhost, 127.0.0.0/8, ::1), so a leaked CA key cannot vouch for any
  real web site in a verifier that honours them (OpenSSL, Chromium, Windows, macOS do).
* The server certificate is made again when missing, unreadable, not signed by the CA,
  or expiring within `RENEW_BEFORE`; it is valid `LEAF_DAYS` at most (browsers refuse
  longer-lived server certificates).

Files live in `devcert_dir()`: AEROGRID_DEVCERT_DIR, else the user's config folder
(`~/.config/aerogrid/devcert`, `%APPDATA%\\aerogrid\\devcert`,
`~/Library/Application Support/aerogrid/devcert`). Keys are written 0600, atomically.
"""

from __future__ import annotations

import datetime as dt
import errno
import getpass
import hashlib
import ipaddress
import logging
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CERT",
    "CA_DAYS",
    "CA_KEY",
    "DEVCERT_DIR_ENV",
    "LEAF_CERT",
    "LEAF_DAYS",
    "LEAF_KEY",
    "NAMES",
    "RENEW_BEFORE",
    "DevCert",
    "DevCertError",
    "devcert_dir",
    "ensure_devcert",
]

log = logging.getLogger(__name__)

DEVCERT_DIR_ENV: Final = "AEROGRID_DEVCERT_DIR"
CA_CERT: Final = "aerogrid-dev-ca.pem"
CA_KEY: Final = "aerogrid-dev-ca-key.pem"
LEAF_CERT: Final = "localhost.pem"
LEAF_KEY: Final = "localhost-key.pem"
#: The names the server certificate is for: how a local client reaches the endpoint.
NAMES: Final = ("localhost", "127.0.0.1", "::1")
#: The CA's life: long, since the user trusts it by hand.
CA_DAYS: Final = 3650
#: The server certificate's life: browsers refuse a server certificate valid > 398 days.
LEAF_DAYS: Final = 397
#: A certificate expiring sooner than this is made again.
RENEW_BEFORE: Final = dt.timedelta(days=30)
#: Backdating, for clocks a little behind.
_SKEW: Final = dt.timedelta(hours=1)
_ORGANIZATION: Final = "AeroGrid development CA"


class DevCertError(Exception):
    """The certificate cannot be made or read (a broken or unwritable folder): one line."""


@dataclass(frozen=True)
class DevCert:
    """Where the development CA and the server certificate are, and what was just made."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    #: The CA was made by this call: it must be trusted (again).
    ca_created: bool = False
    #: The server certificate was made by this call.
    cert_created: bool = False

    def load_ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_cert.read_bytes())

    def load_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    def ca_fingerprint(self) -> str:
        """The CA's SHA-256 fingerprint (AA:BB:…), as trust stores show it."""
        der = self.load_ca().public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def devcert_dir() -> Path:
    """AEROGRID_DEVCERT_DIR, else the per-user config folder's aerogrid/devcert."""
    override = os.environ.get(DEVCERT_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "aerogrid" / "devcert"


def ensure_devcert(
    directory: Path | None = None,
    *,
    leaf_days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
) -> DevCert:
    """The CA and the server certificate in `directory` (default `devcert_dir()`), made as needed.

    Raises DevCertError, one line naming the folder, when the folder cannot be made,
    read or written. `leaf_days` (≤ LEAF_DAYS) and `now` are for tests.
    """
    if not 0 < leaf_days <= LEAF_DAYS:
        raise ValueError(f"leaf_days must be 1..{LEAF_DAYS}, not {leaf_days}")
    folder = directory if directory is not None else devcert_dir()
    now = now or dt.datetime.now(dt.UTC)
    paths = DevCert(
        folder, folder / CA_CERT, folder / CA_KEY, folder / LEAF_CERT, folder / LEAF_KEY
    )
    try:
        _make_dir(folder)
        ca = _load_pair(paths.ca_cert, paths.ca_key)
        ca_created = ca is None or not _good_ca(ca[0], now)
        if ca_created:
            if ca is not None:
                log.warning(
                    "the development CA in %s expires soon (or is no CA): made a new one; "
                    "trust it again (aerogrid excel certificate --install)",
                    folder,
                )
            ca = _make_ca(now)
            _write_pair(paths.ca_cert, paths.ca_key, *ca)
        assert ca is not None
        leaf = None if ca_created else _load_pair(paths.cert, paths.key)
        cert_created = leaf is None or not _good_leaf(leaf[0], ca[0], now)
        if cert_created:
            _write_pair(paths.cert, paths.key, *_make_leaf(ca[0], ca[1], now, leaf_days))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != str(folder) else ""
        raise DevCertError(
            f"cannot keep the development certificate in {folder}: {exc.strerror or exc}"
            f"{where}; set {DEVCERT_DIR_ENV} to a writable folder"
        ) from None
    return DevCert(
        paths.directory,
        paths.ca_cert,
        paths.ca_key,
        paths.cert,
        paths.key,
        ca_created=ca_created,
        cert_created=cert_created,
    )


# --- checking what is there ---------------------------------------------------------------

_Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _load_pair(cert_path: Path, key_path: Path) -> _Pair | None:
    """The certificate and its key, or None when either is missing, garbled or mismatched.

    Any other OSError (permissions, a folder where a file should be) is raised: that
    is a broken folder to report, not a certificate to replace.
    """
    try:
        cert_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        log.warning("development certificate %s is unreadable: making it again", cert_path)
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        log.warning("development certificate %s does not match its key: making it again", cert_path)
        return None
    _tighten(key_path)
    return cert, key


def _fresh(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _good_ca(cert: x509.Certificate, now: dt.datetime) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and _fresh(cert, now)


def _good_leaf(cert: x509.Certificate, ca: x509.Certificate, now: dt.datetime) -> bool:
    """Fresh, signed by this CA, and for every name in NAMES."""
    if not _fresh(cert, now):
        return False
    try:
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = {*names.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return set(NAMES) <= have


# --- making them -----------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: every browser and OS takes it, and it is made in a millisecond.
    return ec.generate_private_key(ec.SECP256R1())


def _owner() -> str:
    """user@host, so the CA is recognisable in a trust store shared by several machines."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "user"
    return f"{user}@{socket.gethostname()}"[:40]


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only; a CA's key also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(now: dt.datetime) -> _Pair:
    key = _key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _owner()),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{_ORGANIZATION} ({_owner()})"[:64]),
        ]
    )
    local = x509.NameConstraints(
        permitted_subtrees=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
            x509.IPAddress(ipaddress.ip_network("::1/128")),
        ],
        excluded_subtrees=None,
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now - _SKEW + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(local, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime, days: int
) -> _Pair:
    key = _key()
    public = key.public_key()
    names: list[x509.GeneralName] = [x509.DNSName(NAMES[0])]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in NAMES[1:]]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    start = now - _SKEW
    # Never outlive the CA: a chain is only as valid as its root.
    end = min(start + dt.timedelta(days=days), ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# --- files ---------------------------------------------------------------------------------------


def _make_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(folder))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _tighten(path: Path) -> None:
    """A key readable by others (copied around by hand) goes back to 0600."""
    if os.name == "posix" and path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file and a rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    """The key first: a certificate on disk always has its key next to it."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
