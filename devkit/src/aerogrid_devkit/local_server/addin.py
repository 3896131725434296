"""The Excel add-in's files at `/addin/…`, in front of the Connect app, on the local endpoint.

Office loads an add-in's task pane and its custom functions' script from the bundle
URL in its manifest (`aerogrid excel manifest` defaults it to this endpoint's
`https://localhost:PORT/addin/`). Serving the bundle here, next to the data, keeps
the add-in and its data on one origin and one port: no second dev server, no CORS.

`AddinFiles` is a small ASGI dispatcher: GET and HEAD of `/addin/<path>` are answered
from `addin_bundle_dir()`, everything else goes to the wrapped app (Connect, gRPC-Web,
health). Deliberately strict, since any page in the user's browser can reach localhost:

* only plain relative paths inside the bundle: `..`, `.`, empty or hidden (dot)
  segments, backslashes, NULs and symlinks leading out of the folder are 404;
* every answer says `Cache-Control: no-cache` (Excel revalidates, so a rebuilt bundle
  is picked up; the ETag keeps that to a 304) and `X-Content-Type-Options: nosniff`;
* files are readable from any origin (`Access-Control-Allow-Origin: *`, as Office's
  own dev server sends): Excel on the web fetches the metadata from its own origin,
  and the bundle holds nothing secret (no credentials are ever involved);
* other methods are 405; a bundle not built yet is a 404 that says how to build it.

The folder is looked up on every request, so `make excel` while `aerogrid dev` runs
is enough.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aerogrid.server.web import ASGIApp, ASGIReceive, ASGIScope, ASGISend

__all__ = [
    "ADDIN_DIR_ENV",
    "CONTENT_TYPES",
    "NOT_BUILT",
    "PREFIX",
    "AddinCounts",
    "AddinFiles",
    "addin_bundle_dir",
]

log = logging.getLogger(__name__)

ADDIN_DIR_ENV: Final = "AEROGRID_ADDIN_DIR"
#: Where the bundle is served; `PREFIX` alone is the task pane.
PREFIX: Final = "/addin/"
INDEX: Final = "taskpane.html"
NOT_BUILT: Final = f'the add-in bundle is not built: run "make excel" (or set {ADDIN_DIR_ENV})'
#: By suffix; anything else is application/octet-stream (and nosniff keeps it so).
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
}
_COMMON_HEADERS: Final = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
]
_ANY_ORIGIN: Final = (b"access-control-allow-origin", b"*")
# The checkout this file is in, when it is in one (four folders up from this one).
_CHECKOUT: Final = Path(__file__).resolve().parents[4]


def addin_bundle_dir() -> Path | None:
    """Where the add-in's built files are; None when nowhere.

    AEROGRID_ADDIN_DIR (taken as given, even if missing: the user asked for it), else
    the `aerogrid_devkit/addin/` folder a wheel or frozen build ships, else this
    checkout's `excel/dist/addin/` when it has been built.
    """
    override = os.environ.get(ADDIN_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    packaged = Path(__file__).resolve().parents[1] / "addin"
    if packaged.is_dir():
        return packaged
    built = _CHECKOUT / "excel" / "dist" / "addin"
    if (_CHECKOUT / "excel" / "package.json").is_file() and built.is_dir():
        return built
    return None


@dataclass
class AddinCounts:
    """Requests for add-in files: served (200), not modified (304), and refused by reason."""

    served: int = 0
    not_modified: int = 0
    #: not_found, not_built, method (not GET/HEAD), bad_path (traversal and the like).
    refused: Counter[str] = field(default_factory=Counter)


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class AddinFiles:
    """ASGI: `/addin/…` from the bundle folder, everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        bundle_dir: Callable[[], Path | None] = addin_bundle_dir,
    ) -> None:
        self.app = app
        self.bundle_dir = bundle_dir
        self.counts = AddinCounts()

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if path == PREFIX.rstrip("/"):
            await self._redirect(scope, send)
        elif path.startswith(PREFIX):
            await self._serve(scope, send, path[len(PREFIX) :])
        else:
            await self.app(scope, receive, send)

    async def _serve(self, scope: ASGIScope, send: ASGISend, relative: str) -> None:
        method = scope.get("method", "")
        try:
            if method not in ("GET", "HEAD"):
                raise _Refused(405, "method", f"{method} is not allowed here: GET or HEAD")
            # Off the event loop: a few stat calls, but on whatever disk the bundle is on.
            file = await asyncio.to_thread(self._find, relative)
            stat = await asyncio.to_thread(file.stat)
            etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'.encode()
            if etag in _if_none_match(scope):
                self.counts.not_modified += 1
                await _respond(send, 304, [(b"etag", etag), _ANY_ORIGIN], None, head=True)
                return
            body = await asyncio.to_thread(file.read_bytes)
        except _Refused as refused:
            self.counts.refused[refused.reason] += 1
            log.debug("add-in: %s %s refused (%s)", method, relative, refused.reason)
            extra = [(b"allow", b"GET, HEAD")] if refused.status == 405 else []
            await _respond(
                send,
                refused.status,
                [(b"content-type", b"text/plain; charset=utf-8"), *extra],
                refused.message.encode() + b"\n",
                head=method == "HEAD",
            )
            return
        except OSError as exc:  # vanished or unreadable between the checks and the read
            self.counts.refused["not_found"] += 1
            log.debug("add-in: %s unreadable: %s", relative, exc)
            await _respond(
                send,
                404,
                [(b"content-type", b"text/plain; charset=utf-8")],
                b"not found\n",
                head=method == "HEAD",
            )
            return
        self.counts.served += 1
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        await _respond(
            send,
            200,
            [(b"content-type", content_type.encode()), (b"etag", etag), _ANY_ORIGIN],
            body,
            head=method == "HEAD",
        )

    def _find(self, relative: str) -> Path:
        """The file for a path under /addin/, or _Refused (404) for anything else."""
        shown = f"not found: {(PREFIX + relative)[:200]!r}"
        not_found = _Refused(404, "not_found", shown)
        relative = relative or INDEX
        segments = relative.split("/")
        if (
            "\\" in relative
            or "\x00" in relative
            or any(s in ("", ".", "..") or s.startswith(".") or ":" in s for s in segments)
        ):
            raise _Refused(404, "bad_path", shown)
        folder = self.bundle_dir()
        if folder is None or not folder.is_dir():
            raise _Refused(404, "not_built", NOT_BUILT)
        root = folder.resolve()
        try:
            file = root.joinpath(*segments).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            raise not_found from None
        if not file.is_relative_to(root):  # a symlink out of the bundle
            raise _Refused(404, "bad_path", shown)
        if not file.is_file():
            raise not_found
        return file

    async def _redirect(self, scope: ASGIScope, send: ASGISend) -> None:
        """/addin → /addin/ so the task pane's relative links resolve under it."""
        query = scope.get("query_string", b"")
        location = PREFIX.encode() + (b"?" + query if query else b"")
        await _respond(
            send,
            308,
            [(b"location", location), (b"content-type", b"text/plain; charset=utf-8")],
            b"",
            head=scope.get("method") == "HEAD",
        )


def _if_none_match(scope: ASGIScope) -> list[bytes]:
    tags: list[bytes] = []
    for name, value in scope.get("headers", ()):
        if name.lower() == b"if-none-match":
            tags += [tag.strip() for tag in value.split(b",")]
    return tags


async def _respond(
    send: ASGISend,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    *,
    head: bool,
) -> None:
    """One whole response; `body` None: no body and no length (a 304)."""
    length = [] if body is None else [(b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, *_COMMON_HEADERS, *length],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head or body is None else body})
