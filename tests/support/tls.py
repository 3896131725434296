"""A throwaway certificate authority for TLS tests, made with the `cryptography` package.

`make_test_pki(folder)` writes PEM files: a CA, a server certificate for 127.0.0.1 and localhost
signed by it (what the broker presents) and a client certificate signed by it (for mutual TLS).
Keys are unencrypted PKCS#8, the form Kafka's PEM key stores accept inline (`ssl.keystore.key`).
EC P-256 keys keep generation to milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Names every server certificate covers: clients reach test brokers on 127.0.0.1.
SERVER_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files `make_test_pki` wrote."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca_cert: Path
    server_cert: Path  # the server certificate followed by the CA certificate (a chain)
    server_key: Path
    client_cert: Path
    client_key: Path


#: A CA key's usage: signatures, certificates and CRLs (the test PKIs share it).
CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AeroGrid tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_test_pki(folder: Path, hosts: tuple[str, ...] = SERVER_HOSTS) -> TestPKI:
    """Create a CA and a server and a client certificate signed by it, as PEM files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("AeroGrid test CA")
    ca = (
        _builder("AeroGrid test CA", ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        common_name: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        builder = (
            _builder(common_name, ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(authority_key_id, critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            server_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            server_names.append(x509.DNSName(host))
    server, server_key = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    client, client_key = leaf("aerogrid-test-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    pki = TestPKI(
        ca_cert=folder / "ca.pem",
        server_cert=folder / "server-chain.pem",
        server_key=folder / "server-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
    )
    pki.ca_cert.write_bytes(_pem(ca))
    pki.server_cert.write_bytes(_pem(server) + _pem(ca))
    _write_key(pki.server_key, server_key)
    pki.client_cert.write_bytes(_pem(client))
    _write_key(pki.client_key, client_key)
    return pki
