"""The development certificate (`aerogrid_devkit.devcert`) and `aerogrid excel certificate`.

Every test keeps its files in a temporary folder (AEROGRID_DEVCERT_DIR or an argument), and
`--install` runs a fake command: no test touches this machine's trust store.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store

from aerogrid_devkit import devcert
from aerogrid_devkit.devcert import DevCert, DevCertError, devcert_dir, ensure_devcert
from aerogrid_devkit.excel_manifest import TrustStore, excel


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verify(cert: DevCert, name: x509.verification.Subject, at: dt.datetime | None = None) -> None:
    """Verify the served certificate chains to the CA for `name` (Chromium-like rules)."""
    store = Store([cert.load_ca()])
    verifier = PolicyBuilder().store(store).time(at or dt.datetime.now(dt.UTC))
    verifier.build_server_verifier(name).verify(cert.load_cert(), [])


def test_made_once_then_reused(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "devcert"
    first = ensure_devcert(folder)
    assert first.ca_created and first.cert_created
    assert first.directory == folder and first.ca_cert.parent == folder
    second = ensure_devcert(folder)
    assert not second.ca_created and not second.cert_created
    assert serial(second.ca_cert) == serial(first.ca_cert)
    assert serial(second.cert) == serial(first.cert)
    if os.name == "posix":
        assert mode(first.ca_key) == mode(first.key) == 0o600
        assert mode(folder) == 0o700
        # a key made readable by others goes back to 0600
        first.key.chmod(0o644)
        ensure_devcert(folder)
        assert mode(first.key) == 0o600


def test_the_chain_validates_for_every_local_name_and_nothing_else(tmp_path: Path) -> None:
    cert = ensure_devcert(tmp_path)
    for name in (
        DNSName("localhost"),
        IPAddress(ipaddress.ip_address("127.0.0.1")),
        IPAddress(ipaddress.ip_address("::1")),
    ):
        verify(cert, name)
    with pytest.raises(x509.verification.VerificationError):
        verify(cert, DNSName("example.com"))

    ca, leaf = cert.load_ca(), cert.load_cert()
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    names = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    assert x509.DNSName("localhost") in (names.permitted_subtrees or [])
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=devcert.LEAF_DAYS)  # browsers' limit is 398
    with pytest.raises(ValueError):
        ensure_devcert(tmp_path, leaf_days=devcert.LEAF_DAYS + 1)


def test_a_leaf_near_expiry_is_made_again_and_the_ca_kept(tmp_path: Path) -> None:
    short = ensure_devcert(tmp_path, leaf_days=10)  # expires within the 30-day margin
    ca_serial, leaf_serial = serial(short.ca_cert), serial(short.cert)
    again = ensure_devcert(tmp_path)
    assert again.cert_created and not again.ca_created
    assert serial(again.ca_cert) == ca_serial and serial(again.cert) != leaf_serial
    assert ensure_devcert(tmp_path).cert_created is False  # the renewed one is kept

    # a year on: the leaf is renewed, the CA (trusted by the user) is not
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=380)
    renewed = ensure_devcert(tmp_path, now=later)
    assert renewed.cert_created and not renewed.ca_created
    assert serial(renewed.ca_cert) == ca_serial
    verify(renewed, DNSName("localhost"), at=later)

    # near the CA's own end: a new CA (to trust again), and a leaf signed by it
    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=devcert.CA_DAYS - 10)
    replaced = ensure_devcert(tmp_path, now=end)
    assert replaced.ca_created and replaced.cert_created
    assert serial(replaced.ca_cert) != ca_serial
    verify(replaced, DNSName("localhost"), at=end)


def test_unreadable_files_are_made_again(tmp_path: Path) -> None:
    first = ensure_devcert(tmp_path)
    ca_serial = serial(first.ca_cert)
    first.cert.write_text("not a certificate")
    fixed = ensure_devcert(tmp_path)
    assert fixed.cert_created and not fixed.ca_created and serial(fixed.ca_cert) == ca_serial
    verify(fixed, DNSName("localhost"))
    # a leaf signed by some other CA (a CA made again elsewhere) is replaced too
    other = ensure_devcert(tmp_path / "other")
    fixed.cert.write_bytes(other.cert.read_bytes())
    fixed.key.write_bytes(other.key.read_bytes())
    assert ensure_devcert(tmp_path).cert_created
    # a garbled CA key: nothing can be signed with it, so a new CA
    first.ca_key.write_text("garbage")
    remade = ensure_devcert(tmp_path)
    assert remade.ca_created and serial(remade.ca_cert) != ca_serial
    verify(remade, DNSName("localhost"))


def test_a_broken_folder_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for folder in (blocker, blocker / "devcert"):
        with pytest.raises(DevCertError) as caught:
            ensure_devcert(folder)
        message = str(caught.value)
        assert "\n" not in message
        assert str(folder) in message and devcert.DEVCERT_DIR_ENV in message
    if os.name == "posix" and os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(DevCertError, match="writable"):
            ensure_devcert(locked)


def test_the_folder_is_per_user_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(devcert.DEVCERT_DIR_ENV, str(tmp_path / "mine"))
    assert devcert_dir() == tmp_path / "mine"
    assert ensure_devcert().directory == tmp_path / "mine"
    monkeypatch.delenv(devcert.DEVCERT_DIR_ENV)
    default = devcert_dir()
    assert default.parts[-2:] == ("aerogrid", "devcert")
    if os.name == "posix" and "darwin" not in os.uname().sysname.lower():
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        assert devcert_dir() == tmp_path / "xdg" / "aerogrid" / "devcert"


# --- aerogrid excel certificate -----------------------------------------------------------


class FakeRunner:
    """Stands in for certutil / security: records the command, never runs it."""

    def __init__(self, code: int = 0, output: str = "", error: OSError | None = None) -> None:
        self.calls: list[list[str]] = []
        self.code, self.output, self.error = code, output, error

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        if self.error is not None:
            raise self.error
        return self.code, self.output


def certificate(
    folder: Path, *args: str, system: str = "Linux", runner: FakeRunner | None = None
) -> tuple[int, str, str, FakeRunner]:
    runner = runner or FakeRunner()
    result = CliRunner().invoke(
        excel,
        ["certificate", *args],
        obj=TrustStore(system=system, run=runner),
        env={devcert.DEVCERT_DIR_ENV: str(folder)},
    )
    return result.exit_code, result.stdout, result.stderr, runner


def test_certificate_shows_the_ca_and_how_to_trust_it(tmp_path: Path) -> None:
    code, out, err, runner = certificate(tmp_path)
    assert code == 0, err
    ca = tmp_path / devcert.CA_CERT
    assert ca.is_file() and f"development CA (just made): {ca}" in out
    assert f'certutil -user -addstore Root "{ca}"' in out
    assert (
        f'security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db "{ca}"'
    ) in out
    assert "update-ca-certificates" in out and "https://localhost:PORT/addin/" in out
    assert runner.calls == []
    # the second time it is the same CA, not "just made"
    code, out, _, _ = certificate(tmp_path)
    assert code == 0 and f"development CA: {ca}" in out

    code, out, err, _ = certificate(tmp_path, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["ca_cert"] == str(ca) and data["names"] == ["localhost", "127.0.0.1", "::1"]
    assert data["created"] == {"ca": False, "cert": False} and data["installed"] is None
    assert set(data["trust"]) == {"windows", "macos", "linux"}
    assert data["ca_sha256"] == DevCert(tmp_path, ca, ca, ca, ca).ca_fingerprint()


@pytest.mark.parametrize(
    ("system", "command"),
    [
        ("Windows", ["certutil", "-user", "-addstore", "Root"]),
        (
            "Darwin",
            [
                "security",
                "add-trusted-cert",
                "-r",
                "trustRoot",
                "-k",
                str(Path.home() / "Library" / "Keychains" / "login.keychain-db"),
            ],
        ),
    ],
)
def test_install_runs_the_os_command(tmp_path: Path, system: str, command: list[str]) -> None:
    code, out, err, runner = certificate(
        tmp_path, "--install", system=system, runner=FakeRunner(output="CertUtil: done")
    )
    assert code == 0, err
    ca = str(tmp_path / devcert.CA_CERT)
    assert runner.calls == [[*command, ca]]
    assert "trusted: the development CA is in" in out and "CertUtil: done" in err
    # --json keeps stdout JSON, and says what ran
    code, out, err, runner = certificate(tmp_path, "--install", "--json", system=system)
    assert code == 0, err
    assert json.loads(out)["installed"] == {"command": [*command, ca], "returncode": 0}


def test_install_failures_exit_1_saying_why(tmp_path: Path) -> None:
    code, _, err, runner = certificate(tmp_path, "--install", system="Linux")
    assert code == 1 and runner.calls == []
    assert "--install does nothing on Linux" in err and "update-ca-certificates" in err
    code, _, err, _ = certificate(
        tmp_path, "--install", system="Windows", runner=FakeRunner(code=5, output="denied")
    )
    assert code == 1 and "certutil failed (exit 5)" in err and "denied" in err
    missing = FakeRunner(error=FileNotFoundError(2, "No such file or directory"))
    code, _, err, _ = certificate(tmp_path, "--install", system="Darwin", runner=missing)
    assert code == 1 and "cannot run security" in err
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, out, err, _ = certificate(blocker)
    assert code == 1 and out == "" and err.startswith("error: cannot keep")
