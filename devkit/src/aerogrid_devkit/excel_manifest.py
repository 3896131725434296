"""`aerogrid excel manifest`: the Excel add-in's manifest for a chosen endpoint.

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

import re
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import NoReturn
from urllib.parse import SplitResult, quote, urlsplit
from xml.sax.saxutils import escape

import click

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
    """The Excel add-in: its manifest for an endpoint."""


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
