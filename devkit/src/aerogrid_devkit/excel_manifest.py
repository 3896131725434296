"""`aerogrid excel manifest|certificate`: the Excel add-in's manifest, and the local HTTPS trust.

`certificate` shows (and with --install trusts) the development CA of
`aerogrid_devkit.devcert`, with which the local endpoint serves the add-in over HTTPS.

The manifest:

The template (`templates/excel-manifest.xml`, a copy of `excel/manifest/manifest.template.xml`
kept equal by a test) is the add-in only XML manifest Excel on Windows, Mac and the web
accept for streaming custom functions in a shared runtime. This fills in:

* the add-in's id: a UUID derived from the endpoint (uuid5), so the same endpoint always
  gives the same add-in and sideloading it again replaces it instead of adding a second;
* the bundle URL: where `taskpane.html`, `functions.js`, `functions.json` and the icons
  are served. Office loads add-in pages over HTTPS only, so it must be https, also on
  localhost. Default: the endpoint's host and port over https, path `/addin/`;
* the data endpoint: its origin goes into `AppDomains`, the URL itself (percent-encoded)
  into the task pane's address as `?endpoint=`. https, or http on localhost/127.0.0.1/::1
  only (the local endpoint of `aerogrid dev`); never credentials in it (use a token).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import SplitResult, quote, urlsplit
from xml.sax.saxutils import escape

import click

from aerogrid_devkit import devcert

TEMPLATE = "excel-manifest.xml"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Office's limit on a bt:Url's DefaultValue.
MAX_URL_LENGTH = 2048
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# A fixed namespace for add-in ids, so an id never collides with another product's uuid5.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://aerogrid.dev/excel-addin")


class ManifestError(ValueError):
    """A bad --endpoint or --bundle-url, as one line for the user."""


@dataclass(frozen=True)
class Url:
    """A checked URL: the normalised text (no trailing slash unless asked) and its origin."""

    text: str
    origin: str
    host: str


def template() -> str:
    """The manifest template the devkit ships."""
    return files("aerogrid_devkit").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def _origin(parts: SplitResult, host: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme.lower()]
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme.lower()}://{netloc}"


def check_url(value: str, what: str, *, local_http: bool) -> Url:
    """`value` as an http(s) URL without credentials, query or fragment.

    https always; http too when `local_http` and the host is localhost/127.0.0.1/::1.
    """
    if not value or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ManifestError(f"{what} {value!r} is not a URL (empty, or spaces in it)")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ManifestError(f"{what} {value!r} must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ManifestError(
            f"{what} has credentials in it (user:password@): leave them out "
            "(the task pane takes a token instead)"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise ManifestError(f"{what} {value!r} has no host")
    try:
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise ManifestError(f"{what} {value!r} has a bad port") from None
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ManifestError(f"{what} {value!r} must have no query (?…) or fragment (#…)")
    if scheme == "http":
        if not local_http:
            raise ManifestError(
                f"{what} {value!r} must be https: Office loads add-in pages over HTTPS "
                "only, also from localhost"
            )
        if host not in LOCAL_HOSTS:
            raise ManifestError(
                f"{what} {value!r} must be https: http is allowed only for a local "
                "endpoint (localhost, 127.0.0.1, ::1)"
            )
    origin = _origin(parts, host)
    text = origin + parts.path.rstrip("/")
    return Url(text=text, origin=origin, host=host)


def default_bundle_url(endpoint: Url) -> str:
    """The endpoint's host and port over https, path /addin/ (where the devkit serves it)."""
    return "https://" + endpoint.origin.split("://", 1)[1] + "/addin/"


def addin_id(endpoint: Url) -> uuid.UUID:
    """The add-in's id for this endpoint: the same endpoint, the same id."""
    return uuid.uuid5(_ID_NAMESPACE, endpoint.text)


def render(endpoint: str, bundle_url: str | None = None, addin: uuid.UUID | None = None) -> str:
    """The filled-in manifest, checked to parse as XML. Raises ManifestError."""
    data = check_url(endpoint, "--endpoint", local_http=True)
    bundle = check_url(
        bundle_url if bundle_url is not None else default_bundle_url(data),
        "--bundle-url",
        local_http=False,
    )
    values = {
        "ADDIN_ID": str(addin if addin is not None else addin_id(data)),
        "BUNDLE_URL": bundle.text + "/",
        "ENDPOINT_ORIGIN": data.origin,
        "ENDPOINT_PARAM": quote(data.text, safe=""),
    }
    taskpane = f"{values['BUNDLE_URL']}taskpane.html?endpoint={values['ENDPOINT_PARAM']}"
    if len(taskpane) > MAX_URL_LENGTH:
        raise ManifestError(
            f"the task pane's URL would be {len(taskpane)} characters; Office takes at most "
            f"{MAX_URL_LENGTH}: use shorter URLs"
        )

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ManifestError(f"the manifest template has an unknown placeholder {{{{{name}}}}}")
        return escape(values[name], {'"': "&quot;", "'": "&apos;"})

    text = _PLACEHOLDER.sub(fill, template())
    try:
        ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise ManifestError(f"the manifest does not parse as XML: {exc}") from None
    return text


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
def excel() -> None:
    """The Excel add-in: its manifest for an endpoint, and the local HTTPS certificate."""


@excel.command()
@click.option(
    "--endpoint",
    required=True,
    help="The data endpoint the add-in connects to: https://…, or http://localhost:PORT.",
)
@click.option(
    "--bundle-url",
    help="Where the add-in's files are served (https) [default: https://ENDPOINT-HOST:PORT/addin/].",
)
@click.option(
    "--id",
    "addin",
    type=click.UUID,
    help="The add-in's id [default: derived from the endpoint, the same every time].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the manifest here [default: stdout].",
)
def manifest(
    endpoint: str, bundle_url: str | None, addin: uuid.UUID | None, out: Path | None
) -> None:
    """Write the add-in's manifest (XML) for ENDPOINT, to sideload into Excel.

    Office loads the add-in's pages over HTTPS only, so the bundle URL must be https,
    also on localhost; the data endpoint may be http only on localhost / 127.0.0.1 / ::1
    (the local endpoint of `aerogrid dev`). No credentials in either URL.
    """
    try:
        text = render(endpoint, bundle_url, addin)
    except ManifestError as exc:
        _fail(str(exc))
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    click.echo(f"wrote {out}", err=True)


# --- aerogrid excel certificate -------------------------------------------------------------


def _run_command(argv: Sequence[str]) -> tuple[int, str]:
    """Run a trust-store command; its output is shown, not mixed into --json."""
    done = subprocess.run(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    return done.returncode, done.stdout


@dataclass(frozen=True)
class TrustStore:
    """The machine `certificate --install` changes: its OS, and how commands run.

    Tests pass their own as click's `obj`, so no test ever touches a real trust store.
    """

    system: str = field(default_factory=platform.system)
    run: Callable[[Sequence[str]], tuple[int, str]] = _run_command


def install_command(system: str, ca: Path) -> list[str] | None:
    """The command that makes the current user trust `ca`, on `system`; None: none to run."""
    if system == "Windows":
        # The current user's store: no administrator needed (Windows asks to confirm).
        return ["certutil", "-user", "-addstore", "Root", str(ca)]
    if system == "Darwin":
        keychain = Path.home() / "Library" / "Keychains" / "login.keychain-db"
        return ["security", "add-trusted-cert", "-r", "trustRoot", "-k", str(keychain), str(ca)]
    return None


def linux_instructions(ca: Path) -> list[str]:
    """Linux has no one store: Excel on the web runs in a browser, which keeps its own."""
    return [
        "browsers keep their own store (Excel on the web runs in one):",
        "  Chrome, Edge: certutil -d sql:$HOME/.pki/nssdb -A -t C,, "
        f'-n "AeroGrid development CA" -i "{ca}"   (package libnss3-tools)',
        "  Firefox: Settings > Privacy & Security > Certificates > View Certificates > "
        "Authorities > Import",
        f'  system-wide (curl, Python): sudo cp "{ca}" '
        "/usr/local/share/ca-certificates/aerogrid-dev-ca.crt && sudo update-ca-certificates",
    ]


def trust_instructions(ca: Path) -> dict[str, str]:
    """How to trust `ca` by hand, per OS (Linux's as one line)."""
    return {
        "windows": f'certutil -user -addstore Root "{ca}"',
        "macos": (
            "security add-trusted-cert -r trustRoot "
            f'-k ~/Library/Keychains/login.keychain-db "{ca}"'
        ),
        "linux": " ".join(line.strip() for line in linux_instructions(ca)),
    }


@excel.command()
@click.option(
    "--install",
    is_flag=True,
    help="Trust the CA for the current user now (Windows, macOS; elsewhere: says how).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the paths and details as JSON.")
@click.pass_context
def certificate(ctx: click.Context, install: bool, as_json: bool) -> None:
    """The development certificate the local endpoint serves HTTPS with, and how to trust it.

    Office loads the add-in's pages over HTTPS only, also from localhost, so `aerogrid
    dev` serves them at https://localhost:PORT/addin/ with a certificate signed by a
    development CA of your own (made here on first use, kept across runs; it can sign
    for localhost only). Trust that CA once. Its key stays in the same folder (mode 0600):
    set AEROGRID_DEVCERT_DIR to keep the files elsewhere.
    """
    store = ctx.find_object(TrustStore) or TrustStore()
    try:
        cert = devcert.ensure_devcert()
        ca, leaf = cert.load_ca(), cert.load_cert()
        fingerprint = cert.ca_fingerprint()
    except (devcert.DevCertError, OSError, ValueError) as exc:
        _fail(str(exc))
    manual = trust_instructions(cert.ca_cert)
    command = install_command(store.system, cert.ca_cert) if install else None
    installed: dict[str, Any] | None = None
    if command is not None:
        try:
            code, output = store.run(command)
        except OSError as exc:
            _fail(f"cannot run {command[0]}: {exc.strerror or exc}; trust the CA by hand")
        if output.strip():
            click.echo(output.rstrip(), err=True)
        installed = {"command": command, "returncode": code}
    if as_json:
        data = {
            "directory": str(cert.directory),
            "ca_cert": str(cert.ca_cert),
            "ca_key": str(cert.ca_key),
            "cert": str(cert.cert),
            "key": str(cert.key),
            "names": list(devcert.NAMES),
            "ca_sha256": fingerprint,
            "ca_not_after": ca.not_valid_after_utc.isoformat(),
            "cert_not_after": leaf.not_valid_after_utc.isoformat(),
            "created": {"ca": cert.ca_created, "cert": cert.cert_created},
            "trust": manual,
            "installed": installed,
        }
        click.echo(json.dumps(data, indent=2))
    else:
        made = " (just made)" if cert.ca_created else ""
        click.echo(f"development CA{made}: {cert.ca_cert}")
        click.echo(f"  SHA-256 {fingerprint}")
        click.echo(f"  valid until {ca.not_valid_after_utc:%Y-%m-%d}; signs for localhost only")
        click.echo(
            f"server certificate: {cert.cert} ({', '.join(devcert.NAMES)}; "
            f"valid until {leaf.not_valid_after_utc:%Y-%m-%d}, renewed automatically)"
        )
        if not install:
            click.echo(
                "Trust the CA once, so Excel loads the add-in from "
                "https://localhost:PORT/addin/ (aerogrid dev):"
            )
            click.echo(f"  Windows: {manual['windows']}")
            click.echo(f"  macOS:   {manual['macos']}")
            linux = linux_instructions(cert.ca_cert)
            click.echo(f"  Linux:   {linux[0]}")
            for line in linux[1:]:
                click.echo(f"           {line}")
            click.echo("or run: aerogrid excel certificate --install (Windows, macOS)")
    if install:
        _report_install(store.system, cert.ca_cert, installed, quiet=as_json)


def _report_install(
    system: str, ca: Path, installed: dict[str, Any] | None, *, quiet: bool
) -> None:
    """One line on what --install did; exit 1 when the CA is not trusted after it."""
    if installed is None:
        how = "\n".join(f"  {line}" for line in linux_instructions(ca))
        _fail(f"--install does nothing on {system or 'this system'}: trust {ca} by hand;\n{how}")
    if installed["returncode"] != 0:
        _fail(
            f"{installed['command'][0]} failed (exit {installed['returncode']}): "
            "the CA is not trusted; see its output above"
        )
    if not quiet:
        where = "your login keychain" if system == "Darwin" else "your user's Root store"
        click.echo(f"trusted: the development CA is in {where}; restart Excel to pick it up")
